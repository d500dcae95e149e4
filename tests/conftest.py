"""Shared fixtures: where the real Task04 cases live, and a small NIfTI writer."""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 on the 2-core CI machine: one thread per worker (and per CLI it starts, by inheritance);
    # two workers of two threads each spin-wait on each other's cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
TASK04 = Path(os.environ.get("TASK04_DIR", REPO.parent / "shared" / "data" / "Task04_Hippocampus"))


@pytest.fixture(scope="session")
def task04() -> Path:
    """The shared Task04_Hippocampus folder (tests on real data skip, loudly, where it is absent)."""
    if not (TASK04 / "dataset.json").is_file():
        pytest.skip(f"real Task04 data not found at {TASK04} (set TASK04_DIR)")
    return TASK04


REAL_DATA = (TASK04 / "dataset.json").is_file()


@pytest.fixture(scope="session")
def decathlon(tmp_path_factory) -> Path:
    """Task04 where it is present, else synthetic cases in its layout and under its case names
    (``hippocampus_001`` ...): for tests of the pipeline, not of the anatomy. Anatomy checks (a trained
    model's Dice) run only where ``REAL_DATA``."""
    if REAL_DATA:
        return TASK04
    from bundle.data.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path_factory.mktemp("decathlon"), num_cases=6, seed=0)
    manifest = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    for i, pair in enumerate(manifest["training"], start=1):
        for key in ("image", "label"):
            old = root / pair[key]
            pair[key] = pair[key].replace(old.name, f"hippocampus_{i:03d}.nii.gz")
            old.rename(root / pair[key])
    (root / "dataset.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny networks (``pytestmark = pytest.mark.usefixtures("one_thread")``): one torch thread
    is as fast for them, and two spin-wait badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_CHANNELS = (4, 8, 16)


def tiny_unet(spatial_dims: int = 3, **kwargs):
    """The suite's small convertible U-Net (channels 4-8-16 unless given)."""
    from bundle.networks import ConvertibleUNet

    return ConvertibleUNet(spatial_dims, channels=kwargs.pop("channels", TINY_CHANNELS), **kwargs)


def trained_like(net, x: torch.Tensor):
    """``net`` with real BatchNorm running statistics from ``x`` (three passes), as after training; in eval mode."""
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x)
    return net.eval()


def tiny_snn(ann, x: torch.Tensor, neuron: str = "ternary", **kwargs):
    """``ann`` converted with ``x`` as the calibration images."""
    from bundle.spiking.conversion import convert, one_at_a_time

    return convert(ann, one_at_a_time([x]), neuron=neuron, **kwargs)


def write_nifti(path: Path, array: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def make_pair(root: Path, name: str, shape=(12, 14, 10), images="imagesTr", labels="labelsTr"):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    write_nifti(root / images / f"{name}.nii.gz", rng.random(shape, dtype=np.float32) * 100)
    label = np.zeros(shape, np.uint8)
    label[3:7, 3:6, 3:6] = 1
    label[3:7, 6:9, 3:6] = 2
    write_nifti(root / labels / f"{name}.nii.gz", label)
