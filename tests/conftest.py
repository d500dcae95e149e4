"""Shared fixtures: where the real Task04 cases live, and a small NIfTI writer."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TASK04 = Path(__import__("os").environ.get("TASK04_DIR", REPO.parent / "shared" / "data" / "Task04_Hippocampus"))


@pytest.fixture(scope="session")
def task04() -> Path:
    """The shared Task04_Hippocampus folder (tests on real data skip, loudly, where it is absent)."""
    if not (TASK04 / "dataset.json").is_file():
        pytest.skip(f"real Task04 data not found at {TASK04} (set TASK04_DIR)")
    return TASK04


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny networks (``pytestmark = pytest.mark.usefixtures("one_thread")``): one torch thread
    is as fast for them, and two spin-wait badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
