"""The MONAI Label app (apps/monailabel_hippocampus) as a user runs it: a real ``monailabel start_server``.

Checks /info/, masks that equal the bundle's batch inference, saving a corrected label, the refusal of
ids and uploads that leave the studies folder, the endpoints that are refused (HTTP 403: deleting or replacing
images and models, training, scoring, sessions, model downloads) with nothing changed on disk, CORS, bad
params (HTTP 400, one line), concurrent requests answered as each inference ends, the conf keys, and the
one-line refusals at start. One server serves most checks (module fixture); two more starts test refusals.
"""

import asyncio
import hashlib
import importlib
import importlib.util
import json
import re
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


ALLOWED_ORIGIN = "http://localhost:3000"


def app_module(relative: str):
    """A module of the app by file (the app's ``lib`` package is not on this process's path)."""
    spec = importlib.util.spec_from_file_location(f"hippocampus_app_{Path(relative).stem}", APP / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def app_lib(name: str):
    """``lib.<name>`` of the app, imported as the server imports it (its modules import ``lib.guards``)."""
    sys.path.insert(0, str(APP))
    try:
        return importlib.import_module(f"lib.{name}")
    finally:
        sys.path.remove(str(APP))


def digests(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file directly in ``folders`` (the studies' images, the repository's models)."""
    return {
        str(f): hashlib.sha256(f.read_bytes()).hexdigest() for d in folders for f in sorted(d.iterdir()) if f.is_file()
    }


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
    url: str,
    method: str = "GET",
    data: dict | None = None,
    files: dict | None = None,
    timeout: float = 300,
    headers: dict | None = None,
) -> tuple[int, bytes]:
    """``data``: form fields; ``files``: ``{field: (filename, bytes)}`` sent as multipart/form-data."""
    status, body, _ = request_full(url, method, data, files, timeout, headers)
    return status, body


def request_full(
    url: str,
    method: str = "GET",
    data: dict | None = None,
    files: dict | None = None,
    timeout: float = 300,
    headers: dict | None = None,
) -> tuple[int, bytes, dict]:
    """:func:`request`, also returning the response headers (lower-case names)."""
    headers, body = dict(headers or {}), urllib.parse.urlencode(data).encode() if data else None
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
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def one_line_detail(status: int, body: bytes) -> str:
    """The ``detail`` of an error answer, checked to be one line of text (no traceback)."""
    assert b"Traceback" not in body, body[:500]
    detail = json.loads(body)["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail, (status, detail)
    return detail


class Server:
    def __init__(self, url: str, studies: Path, log: Path):
        self.url, self.studies, self.log = url, studies, log

    def infer(self, model: str, image: str, headers: dict | None = None, **form) -> tuple[int, bytes]:
        query = urllib.parse.urlencode({"image": image, "output": "image"})
        return request(f"{self.url}/infer/{model}?{query}", "POST", form or None, headers=headers)

    def mask(self, model: str, image: str, target: Path) -> nib.Nifti1Image:
        status, body = self.infer(model, image)
        assert status == 200, body[:500]
        target.write_bytes(body)
        return nib.load(target)


HEAD = "whole_head"  # a whole-head NRRD in the studies folder beside the Task04 crops
QUEUE_SIZE = 20  # the module server's inference queue per model: the 20 concurrent requests below fit


def _whole_head_nrrd(path: Path) -> None:
    """A whole head made from the shipped template (moved, resampled to 1.5 mm, LPS order), as NRRD."""
    import SimpleITK as sitk

    from bundle.localization import load_template
    from bundle.localization.synthetic import make_case

    case = make_case(load_template().image, np.random.default_rng(5), orientation="LPS", spacing_range=(1.5, 1.5),
                     max_rotation_deg=10, max_translation_mm=15)  # fmt: skip
    sitk.WriteImage(sitk.Cast(sitk.RescaleIntensity(case.image, 0, 1000), sitk.sitkInt16), str(path))


@pytest.fixture(scope="module")
def server(task04, tmp_path_factory) -> Server:
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    studies.mkdir()
    for case in CASES:
        (studies / f"{case}.nii.gz").write_bytes((task04 / "imagesTr" / f"{case}.nii.gz").read_bytes())
    _whole_head_nrrd(studies / f"{HEAD}.nrrd")
    port, log = free_port(), root / "server.log"
    proc = start_server(
        studies,
        log,
        *("--conf", "models", f"{SNN},ann", *SNN_CONF, "--conf", "cors_origins", ALLOWED_ORIGIN),
        *("--conf", "queue_size", str(QUEUE_SIZE)),
        *("--host", "127.0.0.1", "--port", str(port)),
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server stopped (exit {proc.returncode}) before answering:\n{log.read_text(encoding='utf-8')[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer from the server within {START_TIMEOUT_S} s:\n{log.read_text(encoding='utf-8')[-4000:]}")
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
    assert info["datastore"]["total"] == len(CASES) + 1  # the whole-head NRRD too


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

    network, info = load_model(model, timesteps=SNN_T if model != "ann" else None)
    result = VolumeSegmenter(network, make_inferer(3, [48, 64, 48]), standardization=info["standardization"])(image_file)
    expected = result.mask if hasattr(result, "mask") else result[0]  # a Segmentation, or (mask, activity)
    e = expected[0].numpy()
    same = float(np.mean(m == e))
    dice = np.mean([2 * ((m == k) & (e == k)).sum() / ((m == k).sum() + (e == k).sum()) for k in (1, 2)])
    assert same == 1.0 or dice > 0.99, f"{model}: {same:.4%} voxels agree, Dice {dice:.4f}"


def test_a_whole_head_nrrd_is_localised_as_in_batch_inference(server, tmp_path):
    """The app's whole-head path is the batch inference's: same mask, both sides, in the NRRD's geometry."""
    import SimpleITK as sitk

    image_file = server.studies / f"{HEAD}.nrrd"
    mask = server.mask("ann", HEAD, tmp_path / "mask.nii.gz")
    m = np.asanyarray(mask.dataobj)
    image = sitk.ReadImage(str(image_file))
    assert m.shape == image.GetSize()
    network, info = load_model("ann")
    result = VolumeSegmenter(network, make_inferer(3, [48, 64, 48]), standardization=info["standardization"])(image_file)
    assert result.localized and set(result.sides) == {"left", "right"}
    e = result.mask[0].numpy()
    # the same code; ITK's multi-threaded registration may move a crop by a fraction of a voxel under load
    dice = 2 * ((m > 0) & (e > 0)).sum() / ((m > 0).sum() + (e > 0).sum())
    assert dice > 0.95, dice
    xs = nib.affines.apply_affine(mask.affine, np.argwhere(m > 0))[:, 0]
    assert xs.min() < -10 and xs.max() > 10  # a hippocampus on each side of the midline


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


JUNK = ("junk.pt", b"\x00\x01\x02\x03")


@pytest.mark.parametrize(
    ("method", "url", "files"),
    [
        ("DELETE", f"/datastore/image?id={CASES[0]}", None),
        ("DELETE", f"/datastore/?id={CASES[0]}", None),
        ("PUT", f"/datastore/image?image={CASES[0]}", {"file": (f"{CASES[0]}.nii.gz", b"not an image")}),
        ("PUT", f"/datastore/?image={CASES[0]}", {"file": ("x.nii", b"not an image")}),  # same id, other suffix
        ("PUT", "/model/ann", {"file": JUNK}),
        ("PUT", "/model/snn", {"file": JUNK}),
        ("DELETE", "/model/snn", None),
        ("GET", "/model/snn", None),
        ("GET", "/model/info/ann", None),
        ("POST", "/train/", None),
        ("POST", "/train/snn", None),
        ("DELETE", "/train/", None),
        ("POST", "/scoring/dice", None),
        ("POST", "/batch/infer/ann", None),
        ("PUT", "/session/", {"file": ("x.nii.gz", b"not an image")}),
        ("GET", "/session/abc", None),
        ("DELETE", f"/datastore/label?id={CASES[1]}&tag=final", None),
        ("PUT", f"/datastore/image/info?image={CASES[0]}", None),
        ("GET", "/datastore/dataset", None),
        ("GET", "/logs/", None),
        ("POST", "/reload", None),
    ],
)
def test_admin_and_destructive_endpoints_are_refused_and_change_nothing(server, method, url, files):
    before = digests(server.studies, server.studies / "labels" / "final", REPO / "models")
    status, body = request(f"{server.url}{url}", method, files=files)
    assert status == 403, (status, body[:300])
    detail = one_line_detail(status, body)
    assert "allow_admin" in detail or "never" in detail, detail
    assert digests(server.studies, server.studies / "labels" / "final", REPO / "models") == before


def test_cors_grants_only_the_listed_origin(server):
    for method, headers in [
        ("GET", {}),
        ("OPTIONS", {"Access-Control-Request-Method": "PUT"}),  # a browser's pre-flight before PUT/DELETE
    ]:
        _, _, evil = request_full(f"{server.url}/info/", method, headers={"Origin": "http://evil.example", **headers})
        assert "access-control-allow-origin" not in evil and "access-control-allow-credentials" not in evil, evil
        _, _, good = request_full(f"{server.url}/info/", method, headers={"Origin": ALLOWED_ORIGIN, **headers})
        assert good.get("access-control-allow-origin") == ALLOWED_ORIGIN, good
        assert "access-control-allow-credentials" not in good, good
    # a form POST needs no pre-flight: a foreign page's POST is refused before it runs anything
    status, body = server.infer("ann", CASES[0], headers={"Origin": "http://evil.example"})
    assert status == 403 and "cors_origins" in one_line_detail(status, body)


def test_only_loopback_host_names_are_answered(server):
    # DNS rebinding: a foreign name that resolves to 127.0.0.1 would make the page same-origin
    status, body = request(f"{server.url}/info/", headers={"Host": "evil.example"})
    assert status == 400 and "loopback" in one_line_detail(status, body)
    assert request(f"{server.url}/info/", headers={"Host": f"localhost:{server.url.rsplit(':', 1)[1]}"})[0] == 200


@pytest.mark.parametrize(
    "params",
    [
        "{not json",
        "[1, 2]",
        '"snn"',
        '{"device": "meta"}',
        '{"device": 5}',
        '{"timeout": "x"}',
        '{"save_label": "maybe"}',
        '{"label_tag": "../../x", "save_label": true}',
        '{"model": "snn"}',
        '{"logging": "LOUD"}',
    ],
)
def test_bad_params_get_400_with_one_line(server, params):
    status, body = server.infer("ann", CASES[0], params=params)
    assert status == 400, (status, body[:300])
    assert one_line_detail(status, body).startswith("params")


def test_a_new_image_can_be_uploaded_but_never_replaces_one(server, task04):
    case = "hippocampus_004"
    data = (task04 / "imagesTr" / f"{case}.nii.gz").read_bytes()
    status, body = request(f"{server.url}/datastore/?image={case}", "PUT", files={"file": (f"{case}.nii.gz", data)})
    assert status == 200, body[:300]
    assert (server.studies / f"{case}.nii.gz").read_bytes() == data
    try:
        assert server.infer("ann", case)[0] == 200  # the new id is served
        before = digests(server.studies)
        for name in (f"{case}.nii.gz", f"{case}.nii", f"{case}.nrrd"):
            status, body = request(
                f"{server.url}/datastore/image?image={case}", "PUT", files={"file": (name, b"replacement")}
            )
            assert status == 403 and "never replaced" in one_line_detail(status, body)
        assert digests(server.studies) == before
    finally:  # the other tests count the cases
        (server.studies / f"{case}.nii.gz").unlink()
        request(f"{server.url}/datastore/?output=all")


def test_answers_come_as_each_inference_ends(server):
    # Before, MONAI Label ran the model on the event loop and every caller waited for the whole queue.
    concurrency = app_module("scripts/concurrency.py")
    r = concurrency.measure(server.url, "ann", 8, timeout=300, image_ids=CASES)
    assert r["ok"] == 8, r
    assert r["first_s"] <= 3 * r["single_s"], r
    assert r["first_s"] < r["last_s"] / 2, r  # answers spread out, not all at the end
    assert r["info_during_queue_s"] is not None and r["info_during_queue_s"] < max(1.0, r["single_s"]), r


def test_a_burst_past_the_queue_size_is_refused_with_503_and_retry_after(server):
    concurrency = app_module("scripts/concurrency.py")
    n = 2 * QUEUE_SIZE
    r = concurrency.measure(server.url, "ann", n, timeout=300, image_ids=CASES)
    assert r["statuses"] == [200, 503] and r["ok"] + r["refused"] == n, r
    assert r["ok"] >= QUEUE_SIZE and r["refused"] >= 1, r  # at most QUEUE_SIZE at once; more as places free
    assert r["retry_after_s"] and min(r["retry_after_s"]) >= 1, r
    assert max(r["refused_latencies_s"]) < r["single_s"] + 5, r  # refused at once, not after a wait
    assert request(server.url + "/info/")[0] == 200  # the server still answers
    # one refusal, seen whole: one line naming the model and the cap
    ids = [CASES[i % len(CASES)] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        query = [urllib.parse.urlencode({"image": image, "output": "json"}) for image in ids]
        answers = list(pool.map(lambda q: request_full(f"{server.url}/infer/ann?{q}", "POST"), query))
    refused = [(body, headers) for status, body, headers in answers if status == 503]
    assert refused, [a[0] for a in answers]
    detail = one_line_detail(503, refused[0][0])
    assert "'ann' is busy" in detail and f"queue_size {QUEUE_SIZE}" in detail, detail
    assert int(refused[0][1]["retry-after"]) >= 1


def test_queue_is_bounded_and_first_come_first_served():
    server = app_lib("server")

    async def scenario() -> list:
        queue, order = server.InferenceQueue(2), []

        async def one(i: int) -> None:
            refusal = queue.refusal("ann")
            if refusal is not None:
                order.append((i, refusal.status_code, refusal.headers["Retry-After"]))
                return
            async with queue:
                order.append((i, 200))
                await asyncio.sleep(0.01)

        await asyncio.gather(*(one(i) for i in range(4)))
        await one(4)  # the queue has drained: accepted again
        return order

    order = asyncio.run(scenario())
    assert order == [(0, 200), (2, 503, "1"), (3, 503, "1"), (1, 200), (4, 200)]  # 1 waited its turn
    with pytest.raises(InputError, match="queue_size"):
        server.policy_from_conf({"queue_size": "0"})
    assert server.policy_from_conf({}, 7).queue_size == 7 and server.policy_from_conf({"queue_size": "3"}, 7).queue_size == 3


def _sample_path(path: str) -> str:
    return re.sub(r"\{[^}:]+\}", "x1", re.sub(r"\{[^}]+:path\}", "a/b", path))


def _routes(router):
    for route in getattr(router, "routes", []):
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        yield from _routes(inner) if inner is not None else [route]


def test_every_monailabel_route_is_classified():
    from monailabel.app import app

    server = app_lib("server")
    seen = {}
    for route in _routes(app.router):
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        path = _sample_path(route.path) + ("/x" if not getattr(route, "methods", None) else "")
        for method in methods:
            rule = server.classify(method, path.rstrip("/"))
            assert rule is not server.UNLISTED, f"{method} {route.path}: not in lib/server.py RULES"
            seen[(method, route.path)] = rule.group
    assert len(seen) >= 55, seen  # MONAI Label 0.8.5: 58 (method, path) routes and the /static mount
    open_ = {k for k, group in seen.items() if group == "open"}
    assert {("POST", "/infer/{model}"), ("PUT", "/datastore/label"), ("PUT", "/datastore/"), ("GET", "/info/")} <= open_
    assert {k for k, group in seen.items() if group == "never"} == {
        ("DELETE", "/datastore/image"),
        ("DELETE", "/datastore/"),
        ("PUT", "/model/{model}"),
        ("DELETE", "/model/{model}"),
    }
    writes = {k for k in open_ if k[0] in ("PUT", "DELETE", "POST")}
    assert writes == {
        ("POST", "/infer/{model}"),
        ("POST", "/infer/wsi/{model}"),
        ("POST", "/infer/wsi_v2/{model}"),
        ("POST", "/activelearning/{strategy}"),
        ("PUT", "/datastore/label"),
        ("PUT", "/datastore/image"),
        ("PUT", "/datastore/"),
    }, writes


def asgi_status(app, method: str, path: str, host: str = "127.0.0.1:8000") -> int:
    """The HTTP status ``app`` answers to a body-less request (an ASGI call, no server)."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_admin_key_opens_admin_endpoints_but_never_destructive_ones():
    server = app_lib("server")

    async def ok(scope, receive, send):  # stands for MONAI Label's endpoints
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    for admin in (False, True):
        guarded = server.HttpGuard(ok, server.Policy(allow_admin=admin))
        for method, path in [("GET", "/model/snn"), ("POST", "/train/snn"), ("PUT", "/session/"), ("GET", "/x/y")]:
            assert asgi_status(guarded, method, path) == (200 if admin else 403), (admin, method, path)
        for method, path in [("PUT", "/model/snn"), ("DELETE", "/model/ann"), ("DELETE", "/datastore/image")]:
            assert asgi_status(guarded, method, path) == 403, (admin, method, path)
        assert asgi_status(guarded, "GET", "/info/") == 200
        assert asgi_status(guarded, "GET", "/info/", host="evil.example") == 400


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"allow_admin": "maybe"}, "allow_admin"),
        ({"cors_origins": "*"}, "not an origin"),
        ({"cors_origins": "evil.example"}, "not an origin"),
    ],
)
def test_bad_http_conf_is_refused(conf, message):
    with pytest.raises(InputError, match=message):
        app_lib("server").policy_from_conf(conf)
    policy = app_lib("server").policy_from_conf({"cors_origins": "http://a.example, https://b.example:8443/"})
    assert policy.cors_origins == ("http://a.example", "https://b.example:8443") and not policy.allow_admin


def test_refusals_at_start_are_one_line_without_traceback(tmp_path):
    # Two refusals, started together: a host beyond loopback (192.0.2.1, TEST-NET-1, is on no interface here:
    # even a server that ignored the rule could not bind it) and a model file that is missing.
    (tmp_path / "empty").mkdir()
    cases = {
        "host": (("--host", "192.0.2.1"), ["listens on loopback only", "--host 127.0.0.1"]),
        "model": (
            ("--host", "127.0.0.1", "--conf", "models_dir", str(tmp_path / "empty")),
            ["model_snn_finetuned.pt: model file for 'snn' not found", "--conf snn_ckpt"],
        ),
    }
    procs = {}
    for name, (args, _) in cases.items():
        (tmp_path / name).mkdir()
        procs[name] = start_server(tmp_path, tmp_path / name / "server.log", *args, "--port", str(free_port()))
    for name, proc in procs.items():
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        finally:
            stop(proc)
        log = (tmp_path / name / "server.log").read_text(encoding="utf-8")
        errors = [line for line in log.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2, (name, proc.returncode, log[-3000:])
        assert len(errors) == 1 and all(part in errors[0] for part in cases[name][1]), log[-3000:]
        assert "Traceback" not in log and "Application startup failed" not in log, log[-3000:]


def test_conf_picks_models_in_order_and_names_what_is_missing(tmp_path):
    configs = app_module("lib/configs/segmentation.py")
    choices = configs.model_choices({"models": "ann,snn_converted", "timesteps": "4"})
    assert [(c.name, c.checkpoint.name, c.timesteps) for c in choices] == [
        ("ann", "model_ann.pt", None),
        ("snn_converted", "model_snn_converted.pt", 4),
    ]
    ann = REPO / "models" / "model_ann.pt"
    assert configs.model_choices({"models": "ann", "ann_ckpt": str(ann)})[0].checkpoint == ann.resolve()
    every = configs.model_choices({"models": "all"})  # the T=2 model is served like the others
    assert [c.name for c in every] == ["snn", "snn_t2", "snn_converted", "ann", "ann_int8"]
    assert every[1].checkpoint.name == "model_snn_t2.pt" and "energy" in every[1].description
    with pytest.raises(InputError, match="choose from"):
        configs.model_choices({"models": "snn,unet"})
    with pytest.raises(
        InputError, match="model_snn_finetuned.pt: model file for 'snn' not found; pass --conf snn_ckpt"
    ):
        configs.model_choices({"models": "snn", "models_dir": str(tmp_path)})
    with pytest.raises(InputError, match="timesteps"):
        configs.model_choices({"models": "ann", "timesteps": "0"})
    from bundle.inference.settings import inference_settings

    assert inference_settings()["roi_size"] == [48, 64, 48]


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


def test_the_app_serves_the_settings_of_its_inference_config(task04, tmp_path):
    """--conf inference_config: the app's tasks run with that config's localize, amp, mirror and kernel (hippo-snn's
    settings object), so changing the config changes what a request gets."""
    pytest.importorskip("monailabel")
    from fastapi import HTTPException

    from bundle.inference.settings import InferenceSettings

    config = json.loads((REPO / "configs" / "inference.json").read_text(encoding="utf-8"))
    config.update(localize="on", amp=True, neuron_kernel="eager", mirror=True)
    path = tmp_path / "inference.json"
    path.write_text(json.dumps(config))
    configs, infers = app_lib("configs.segmentation"), app_lib("infers.segmentation")
    choice = configs.model_choices({"models": "ann"})[0]
    crop = str(task04 / "imagesTr" / f"{CASES[0]}.nii.gz")

    default = infers.BundleSegmentation(choice, InferenceSettings.from_config())
    assert default.run_inferer({"image": crop})["result"]["model"] == "ann"  # auto: a crop is segmented as it is
    changed = infers.BundleSegmentation(choice, InferenceSettings.from_config(path))
    segmenter, _ = changed._segmenter("cpu")
    assert segmenter.localize == "on" and changed.settings.amp is True and changed.settings.neuron_kernel == "eager"
    assert changed._segmenter("cpu")[1]["mirror"] is True  # served mirrored (bundle.networks.mirroring)
    from bundle.networks.precision import fast_bfloat16

    assert segmenter.amp["enabled"] == fast_bfloat16("cpu")  # bfloat16 where the CPU has the units for it
    with pytest.raises(HTTPException) as refused:  # localize on: a crop must register to the template, and cannot
        changed.run_inferer({"image": crop})
    assert refused.value.status_code == 422
