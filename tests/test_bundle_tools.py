"""MONAI's own tools on this bundle: verify_metadata offline, versions, monai.bundle.load, --bundle_root, wheel."""

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
import warnings

import pytest
import torch
from conftest import REPO
from packaging.requirements import Requirement

import bundle.resources
from bundle.errors import InputError

METADATA = REPO / "configs" / "metadata.json"
SCHEMA = REPO / "configs" / "schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"  # of the copy of MONAI's schema (see configs/schema/README.md)
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SNN_FILES = ["models/model_snn_converted.pt", "models/model_snn_finetuned.pt", "models/model_snn_t2.pt"]


def meta() -> dict:
    return json.loads(METADATA.read_text(encoding="utf-8"))


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---- verify_metadata against the schema kept in the repo ----


def test_metadata_names_the_schema_kept_in_the_repo():
    assert meta()["schema"].rsplit("/", 1)[-1] == SCHEMA.name


def test_verify_metadata_passes_offline(offline):
    from monai.bundle import verify_metadata

    # the function `python -m monai.bundle verify_metadata --meta_file ... --filepath ...` runs; the md5 pins the copy
    verify_metadata(meta_file=str(METADATA), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


def test_verify_metadata_refuses_metadata_that_breaks_the_schema(offline, tmp_path):
    from monai.bundle import verify_metadata

    broken = meta()
    del broken["numpy_version"]
    broken["network_data_format"]["inputs"]["image"]["num_channels"] = "one"
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(path), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


# ---- the versions in metadata.json are those installed ----


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name).split("+")[0]  # 2.14.1+cpu is release 2.14.1
    except importlib.metadata.PackageNotFoundError:
        return None


def exact_pins() -> set[str]:
    """Packages pyproject pins to one version (==): every install gets exactly that one."""
    project = PYPROJECT["project"]
    lines = project["dependencies"] + [line for group in project["optional-dependencies"].values() for line in group]
    reqs = map(Requirement, lines)
    return {r.name.lower() for r in reqs if len(r.specifier) == 1 and next(iter(r.specifier)).operator == "=="}


def test_metadata_versions_are_the_installed_ones():
    m = meta()
    recorded = {"monai": m["monai_version"], "torch": m["pytorch_version"], "numpy": m["numpy_version"]}
    recorded |= m["required_packages_version"]
    # extras (mlflow, scikit-learn...) are checked where installed: the test install does not pull them all
    recorded |= {name: v for name, v in m["extra_packages_version"].items() if installed(name) is not None}
    exact = exact_pins()
    # a package pinned with == must be the recorded version; one with a range may be a later release of the same
    # major version (an upstream release must not fail CI), a different major is an untested API
    def differs(name: str, version: str) -> bool:
        if name.lower() in exact:
            return installed(name) != version
        return installed(name).split(".")[0] != version.split(".")[0]

    wrong = {name: (version, installed(name)) for name, version in recorded.items() if differs(name, version)}
    assert not wrong, f"metadata.json version != installed version: {wrong}"


def test_metadata_pins_every_dependency_within_pyproject():
    m = meta()
    pins = {"monai": m["monai_version"], "torch": m["pytorch_version"], "numpy": m["numpy_version"]}
    required = {name.lower(): v for name, v in (pins | m["required_packages_version"]).items()}
    extra = {name.lower(): v for name, v in m["extra_packages_version"].items()}
    project = PYPROJECT["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        assert req.name.lower() in required, f"{req.name}: a dependency, missing in required_packages_version"
        assert req.specifier.contains(required[req.name.lower()]), f"{req.name}: pin outside {req.specifier}"
    for group, lines in project["optional-dependencies"].items():
        for req in map(Requirement, lines):
            if group == "test" and req.name in ("pytest", "pytest-xdist"):
                continue  # tests only, not the bundle's
            pin = extra.get(req.name.lower())
            assert pin is not None, f"{req.name} (extra '{group}'): missing in extra_packages_version"
            assert req.specifier.contains(pin), f"{req.name}: pin {pin} outside {req.specifier}"
    assert m["version"] == project["version"]


def test_monai_reads_the_required_packages_unchanged():
    # MONAI 1.6 renames a key "optional_packages_version" to "required_packages_version" when it reads metadata,
    # replacing the required list: optional packages live under "extra_packages_version" instead
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rename warns
        parser.read_meta(str(METADATA))
    assert parser["_meta_"]["required_packages_version"] == meta()["required_packages_version"]
    assert "spikingjelly" in parser["_meta_"]["required_packages_version"]


# ---- monai.bundle.load with every shipped checkpoint ----


def monai_load(model_file: str, workflow_type: str, **kwargs):
    import monai.bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's "config runs code" notice
        return monai.bundle.load(
            name=REPO.name, bundle_dir=str(REPO.parent), model_file=model_file, workflow_type=workflow_type,
            device="cpu", progress=False, **kwargs,
        )  # fmt: skip


# "train" is monai.bundle.load's default workflow_type (configs/train.json's network_def); its initialize makes
# output folders under the working directory, hence the chdir
@pytest.mark.parametrize("workflow_type", ["inference", "train"])
def test_monai_load_gives_the_trained_ann(workflow_type, tmp_path, monkeypatch):
    from bundle.inference.models import load_model

    monkeypatch.chdir(tmp_path)
    # the ANN's file is {"model": weights, "input": its standardisation} (bundle.networks.checkpoint.InputRecord)
    network = monai_load("models/model_ann.pt", workflow_type, key_in_ckpt="model").eval()
    reference, _ = load_model("ann", ckpt=REPO / "models" / "model_ann.pt")
    image = torch.rand(1, 1, 16, 24, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(network(image), reference(image))


@pytest.mark.parametrize("workflow_type", ["inference", "train"])
@pytest.mark.parametrize("model_file", SNN_FILES)
def test_monai_load_refuses_an_snn_checkpoint_in_one_line(model_file, workflow_type, tmp_path, monkeypatch):
    # an SNN is rebuilt from its settings, which monai.bundle.load cannot do: it must not return an untrained U-Net
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as e:
        monai_load(model_file, workflow_type)
    assert "\n" not in str(e.value) and "load_model" in str(e.value)
    with pytest.raises(InputError):  # nor when pointed at the SNN's weights
        monai_load(model_file, workflow_type, key_in_ckpt="state_dict")


# ---- --bundle_root from another folder ----

BUNDLE_RUN = [
    "-m", "monai.bundle", "run", "export", "--config_file", str(REPO / "configs" / "inference.json"),
    "--bundle_root", str(REPO), "--logging_file", str(REPO / "configs" / "logging.conf"), "--model", "ann",
]  # fmt: skip
# `python -m monai.bundle ...` as in a clone that was never pip-installed: no editable-install finder
NOT_INSTALLED = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "snn_hippocampus" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != REPO]
assert importlib.util.find_spec("bundle") is None, "premise: the bundle is importable from " + str(sys.path)
sys.argv = ["monai.bundle", *sys.argv[1:]]
runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
"""


def run_elsewhere(args: list[str], cwd, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, *args]
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_bundle_root_from_another_folder(tmp_path):
    # the code importable (here by PYTHONPATH; or pip install -e ., or a wheel): the ANN comes from <bundle_root>/models
    proc = run_elsewhere(BUNDLE_RUN, tmp_path, pythonpath=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ckpt_export network_def" in proc.stdout  # what `export` says for the ANN, after loading it


def test_bundle_root_without_an_install_fails_in_one_line(tmp_path):
    # MONAI imports the configs' "imports" at initialize, before it puts the bundle root on sys.path
    code = f"import importlib.util, os\nREPO = {str(REPO)!r}\n" + NOT_INSTALLED
    proc = run_elsewhere(["-c", code, *BUNDLE_RUN[2:]], tmp_path)
    assert proc.returncode != 0
    assert "premise" not in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "PYTHONPATH" in last and "pip install" in last, last


# ---- a wheel carries configs/ and models/, and bundle.resources finds them ----


def test_pyproject_puts_every_subpackage_and_bundle_file_in_the_wheel():
    tool = PYPROJECT["tool"]["setuptools"]
    source = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bundle").rglob("__init__.py")}
    packages = set(tool["packages"])
    assert source <= packages, f"subpackages missing in pyproject.toml's packages: {sorted(source - packages)}"
    for folder in ("configs", "models"):
        package = f"bundle.monai_bundle.{folder}"
        assert package in packages and tool["package-dir"][package] == folder
        patterns = tool["package-data"][package]
        files = [p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()]
        missed = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
        assert not missed, f"{folder}/ files left out of the wheel: {missed}"


def fake_module(path):
    spec = importlib.util.spec_from_file_location("resources_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resources_find_the_wheel_layout_first(tmp_path):
    site = tmp_path / "site-packages"
    configs = site / "bundle" / "monai_bundle" / "configs"
    configs.mkdir(parents=True)
    shutil.copy(REPO / "bundle" / "resources.py", site / "bundle")
    (site / "configs").mkdir()  # a bundle-like folder beside the package (site-packages) must not be taken
    for name in ("metadata.json", "inference.json"):
        shutil.copy(REPO / "configs" / name, configs)
        shutil.copy(REPO / "configs" / name, site / "configs")
    resources = fake_module(site / "bundle" / "resources.py")
    assert resources.bundle_root() == site / "bundle" / "monai_bundle"
    assert resources.models_dir() == site / "bundle" / "monai_bundle" / "models"
    assert resources.bundle_file("configs/inference.json").is_file()
    with pytest.raises(InputError, match="not in the bundle"):
        resources.bundle_file("configs/nothing.json")


def test_resources_find_the_checkout_and_say_when_neither_is_there(tmp_path):
    assert bundle.resources.bundle_root() == REPO
    assert (bundle.resources.models_dir() / "model_snn_finetuned.pt").is_file()
    (tmp_path / "bundle").mkdir()
    shutil.copy(REPO / "bundle" / "resources.py", tmp_path / "bundle")
    with pytest.raises(InputError) as e:
        fake_module(tmp_path / "bundle" / "resources.py").bundle_root()
    assert "\n" not in str(e.value) and "reinstall" in str(e.value)


@pytest.mark.slow
def test_a_built_wheel_runs_from_another_folder(tmp_path):
    """The real thing: pip wheel, install it into a folder, run MONAI's CLI and hippo-snn from there (~1 min)."""
    source = tmp_path / "src"
    keep = ["bundle", "configs", "models", "pyproject.toml", "README.md", "LICENSE"]
    for name in keep:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q"]
    wheels, target = tmp_path / "wheels", tmp_path / "target"
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source], check=True)
    subprocess.run([*pip, "install", "--no-deps", "--target", target, *wheels.glob("*.whl")], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((36, 50, 35), np.float32), np.eye(4)), work / "in/a.nii")

    def run(*args):
        cmd = [sys.executable, *args]
        proc = subprocess.run(cmd, check=False, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.strip()

    root = run("-m", "bundle.resources")
    assert root == str(target / "bundle" / "monai_bundle"), root
    assert run("-c", "import bundle; print(bundle.__file__)").startswith(str(target))
    config = run("-m", "bundle.resources", "configs/inference.json")
    run("-m", "monai.bundle", "run", "--config_file", config, "--bundle_root", root, "--dataset_dir", "in",
        "--output_dir", "out1", "--model", "ann", "--progress", "false")  # fmt: skip
    assert (work / "out1" / "volumes.csv").is_file()
    run("-m", "bundle.cli", "segment", "in", "out2", "--model", "ann", "--quiet")
    assert (work / "out2" / "volumes.csv").is_file()


def test_one_version_everywhere():
    """pyproject.toml, the installed package and configs/metadata.json name the same version."""
    import tomllib

    import bundle

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    metadata = json.loads((REPO / "configs" / "metadata.json").read_text(encoding="utf-8"))["version"]
    assert pyproject == metadata == bundle.__version__
    assert pyproject in json.loads((REPO / "configs" / "metadata.json").read_text(encoding="utf-8"))["changelog"]
