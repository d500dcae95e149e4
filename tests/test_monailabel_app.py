"""The MONAI Label app (apps/monailabel_hippocampus) as a user runs it: a real ``monailabel start_server``.

Checks /info/, masks that equal the bundle's batch inference, saving a corrected label, the refusal of
ids and uploads that leave the studies folder, 20 concurrent requests, the conf keys, and the refusal to
listen beyond loopback.
"""

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from bundle.errors import InputError
from bundle.inference.inferers import make_inferer
from bundle.inference.models import load_model
from bundle.inference.segment import VolumeSegmenter

APP = REPO / "apps" / "monailabel_hippocampus"
CASES = ["hippocampus_001", "hippocampus_003"]
# The default model is the fine-tuned SNN; where its file is not shipped yet, serve the converted SNN at T=4.
SNN, SNN_CONF = ("snn", []) if (REPO / "models" / "model_snn_finetuned.pt").is_file() else (
    "snn_converted", ["--conf", "timesteps", "4"]
)  # fmt: skip
SNN_T = None if SNN == "snn" else 4
START_TIMEOUT_S = 240


def app_module(relative: str):
    """A module of the app by file (the app's ``lib`` package is not on this process's path)."""
    spec = importlib.util.spec_from_file_location(f"hippocampus_app_{Path(relative).stem}", APP / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(studies: Path, log: Path, *args: str) -> subprocess.Popen:
    if importlib.util.find_spec("monailabel") is None:
        pytest.fail('monailabel is not installed here: pip install -e ".[test]"')
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP), "--studies", str(studies)]
    with log.open("w") as out:
        return subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(
    url: str, method: str = "GET", data: dict | None = None, files: dict | None = None, timeout: float = 300
) -> tuple[int, bytes]:
    """``data``: form fields; ``files``: ``{field: (filename, bytes)}`` sent as multipart/form-data."""
    headers, body = {}, urllib.parse.urlencode(data).encode() if data else None
    if files:
        boundary = "----monailabel-test-boundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
            for field, (name, content) in files.items()
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, url: str, studies: Path, log: Path):
        self.url, self.studies, self.log = url, studies, log

    def infer(self, model: str, image: str, **form) -> tuple[int, bytes]:
        query = urllib.parse.urlencode({"image": image, "output": "image"})
        return request(f"{self.url}/infer/{model}?{query}", "POST", form or None)

    def mask(self, model: str, image: str, target: Path) -> nib.Nifti1Image:
        status, body = self.infer(model, image)
        assert status == 200, body[:500]
        target.write_bytes(body)
        return nib.load(target)


@pytest.fixture(scope="module")
def server(task04, tmp_path_factory) -> Server:
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    studies.mkdir()
    for case in CASES:
        (studies / f"{case}.nii.gz").write_bytes((task04 / "imagesTr" / f"{case}.nii.gz").read_bytes())
    port, log = free_port(), root / "server.log"
    proc = start_server(
        studies, log, "--conf", "models", f"{SNN},ann", *SNN_CONF, "--host", "127.0.0.1", "--port", str(port)
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server stopped (exit {proc.returncode}) before answering:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer from the server within {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            try:
                if request(f"{url}/info/", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        yield Server(url, studies, log)
    finally:
        stop(proc)


def test_info_lists_the_models_and_labels(server):
    status, body = request(f"{server.url}/info/")
    assert status == 200
    info = json.loads(body)
    assert list(info["models"]) == [SNN, "ann"]  # the SNN first: the default
    assert info["labels"] == ["anterior", "posterior"]
    for model in info["models"].values():
        assert model["type"] == "segmentation" and model["dimension"] == 3
        assert model["labels"] == {"anterior": 1, "posterior": 2}
    assert info["datastore"]["total"] == len(CASES)


@pytest.mark.parametrize("model", [SNN, "ann"])
def test_mask_is_the_batch_inference_mask_in_the_image_geometry(server, model, tmp_path):
    case = CASES[0]
    image_file = server.studies / f"{case}.nii.gz"
    image = nib.load(image_file)
    mask = server.mask(model, case, tmp_path / "mask.nii.gz")
    m = np.asanyarray(mask.dataobj)
    assert mask.shape == image.shape
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
    assert mask.get_data_dtype() == np.uint8
    assert set(np.unique(m)) == {0, 1, 2}

    network, _ = load_model(model, timesteps=SNN_T if model != "ann" else None)
    expected, _ = VolumeSegmenter(network, make_inferer(3, [48, 64, 48]))(image_file)
    e = expected[0].numpy()
    same = float(np.mean(m == e))
    dice = np.mean([2 * ((m == k) & (e == k)).sum() / ((m == k).sum() + (e == k).sum()) for k in (1, 2)])
    assert same == 1.0 or dice > 0.99, f"{model}: {same:.4%} voxels agree, Dice {dice:.4f}"


@pytest.mark.parametrize("image", ["nope", "../../etc/passwd", "/etc/passwd", f"{CASES[0]}.nii.gz", "..", "~"])
def test_ids_outside_the_studies_folder_are_refused(server, image):
    status, body = server.infer("ann", image)
    assert 400 <= status < 500, (status, body[:200])
    assert b"root:" not in body


def test_a_path_smuggled_in_through_params_is_refused(server):
    status, body = server.infer(
        "ann", CASES[0], params=json.dumps({"image": str(server.studies / f"{CASES[0]}.nii.gz")})
    )
    assert 400 <= status < 500, (status, body[:200])


def test_unknown_model_is_refused(server):
    assert server.infer("nnunet", CASES[0])[0] == 404


def test_a_corrected_label_is_saved_in_the_studies_folder(server, tmp_path):
    # what 3D Slicer's "Submit Label" sends
    case = CASES[1]
    mask = server.mask("ann", case, tmp_path / "mask.nii.gz")
    query = urllib.parse.urlencode({"image": case, "tag": "final"})
    files = {"label": ("label.nii.gz", (tmp_path / "mask.nii.gz").read_bytes())}
    status, body = request(f"{server.url}/datastore/label?{query}", "PUT", files=files)
    assert status == 200, body[:300]
    saved = nib.load(server.studies / "labels" / "final" / f"{case}.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), np.asanyarray(mask.dataobj))


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"/datastore/label?image={CASES[0]}&tag=..%2F..%2Fescaped", "label"),
        ("/datastore/label?image=..%2F..%2Fescaped&tag=final", "label"),
        ("/datastore/?image=..%2F..%2Fescaped", "file"),
    ],
)
def test_uploads_cannot_write_outside_the_studies_folder(server, url, field):
    status, body = request(f"{server.url}{url}", "PUT", files={field: ("x.nii.gz", b"not an image")})
    assert 400 <= status < 500, (status, body[:200])
    assert not list(server.studies.parents[1].rglob("escaped*"))  # ../.. from the studies or labels folder


def test_twenty_concurrent_requests_all_get_a_mask(server, tmp_path):
    def one(i: int) -> tuple[int, tuple]:
        case = CASES[i % len(CASES)]
        mask = server.mask("ann", case, tmp_path / f"{i}.nii.gz")
        m = np.asanyarray(mask.dataobj)
        assert set(np.unique(m)) <= {0, 1, 2} and {1, 2} <= set(np.unique(m))
        return mask.shape, nib.load(server.studies / f"{case}.nii.gz").shape

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert len(results) == 20
    for got, want in results:
        assert got == want


def test_server_refuses_to_listen_beyond_loopback(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is on no interface here: even a server that ignored the rule could not bind it.
    proc = start_server(tmp_path, tmp_path / "server.log", "--host", "192.0.2.1", "--port", str(free_port()))
    try:
        proc.wait(timeout=START_TIMEOUT_S)
    finally:
        stop(proc)
    log = (tmp_path / "server.log").read_text()
    assert proc.returncode != 0
    assert "listens on loopback only" in log and "--host 127.0.0.1" in log, log[-3000:]


def test_conf_picks_models_in_order_and_names_what_is_missing(tmp_path):
    configs = app_module("lib/configs/segmentation.py")
    choices = configs.model_choices({"models": "ann,snn_converted", "timesteps": "4"})
    assert [(c.name, c.checkpoint.name, c.timesteps) for c in choices] == [
        ("ann", "model_ann.pt", None),
        ("snn_converted", "model_snn_converted.pt", 4),
    ]
    ann = REPO / "models" / "model_ann.pt"
    assert configs.model_choices({"models": "ann", "ann_ckpt": str(ann)})[0].checkpoint == ann.resolve()
    with pytest.raises(InputError, match="choose from"):
        configs.model_choices({"models": "snn,unet"})
    with pytest.raises(
        InputError, match="model_snn_finetuned.pt: model file for 'snn' not found; pass --conf snn_ckpt"
    ):
        configs.model_choices({"models": "snn", "models_dir": str(tmp_path)})
    with pytest.raises(InputError, match="timesteps"):
        configs.model_choices({"models": "ann", "timesteps": "0"})
    assert configs.inference_settings()["roi_size"] == [48, 64, 48]


@pytest.mark.parametrize(
    ("argv", "conf", "refused"),
    [
        (["monailabel", "start_server", "--app", "a"], {}, True),  # monailabel's default host is 0.0.0.0
        (["monailabel", "start_server", "--host", "0.0.0.0"], {"allow_remote": "true"}, False),
        (["monailabel", "start_server", "-i", "10.0.0.5"], {"allow_remote": "false"}, True),
        (["monailabel", "start_server", "--host", "127.0.0.1"], {}, False),
        (["monailabel", "start_server", "--host", "localhost"], {}, False),
        (["monailabel", "start_server", "--host", "::1"], {}, False),
        (["python", "-m", "monailabel.interfaces.utils.app", "-m", "infer"], {}, False),  # no server
    ],
)
def test_host_rule(argv, conf, refused):
    guards = app_module("lib/guards.py")
    if refused:
        with pytest.raises(InputError, match="loopback only"):
            guards.check_host(argv, conf)
    else:
        guards.check_host(argv, conf)
