"""The flag that does not rely on volume (bundle/inference/confidence.py): the class map's confidence, and the floor a
scan is judged by, which depends on the resolution it was acquired at."""

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle.inference.catalog import COARSE_CONFIDENCE_FLOORS, CONFIDENCE_FLOORS
from bundle.inference.confidence import COARSE_SCAN_MM, confidence, floor_for

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_sharp_class_map_is_sure_and_a_spread_one_is_not():
    sharp = torch.zeros(3, 8, 8, 8)
    sharp[0] = 20.0  # background, certain
    spread = sharp.clone()
    sharp[1, 2:5, 2:5, 2:5] = 40.0  # hippocampus, certain
    spread[0, 2:5, 2:5, 2:5] = 0.0  # every class as likely
    assert confidence(sharp) == 1.0
    assert confidence(spread) == 0.0
    assert confidence(torch.zeros(3, 4, 4, 4).index_fill_(0, torch.tensor([0]), 9.0)) == 0.0  # none possible


@pytest.mark.parametrize(
    ("spacing", "coarse"),
    [((1.0, 1.0, 1.0), False), ((1.5, 1.5, 1.5), False), ((2.0, 2.0, 2.0), True), ((2.0, 2.0, 3.0), True),
     ((0.78, 0.78, 3.2), True), ((0.78, 0.78, 6.5), False), ((1.0, 1.0, 1.7), False)],
)  # fmt: skip
def test_a_scan_acquired_at_2_to_3_mm_takes_the_coarse_floor(spacing, coarse):
    assert floor_for(spacing, 0.96, 0.94) == (0.94 if coarse else 0.96)
    assert floor_for(spacing, 0.96, None) == 0.96  # a model measured at 1 mm only keeps its floor
    assert floor_for(spacing, None, 0.94) is None  # no floor: never flagged for confidence


def test_coarse_floors_are_measured_models_and_lower_than_their_1mm_floors():
    assert COARSE_SCAN_MM[0] > 1.5 and COARSE_SCAN_MM[1] >= 3.0  # the shifts measured: 2 mm and 3 mm slices
    assert set(COARSE_CONFIDENCE_FLOORS) <= set(CONFIDENCE_FLOORS)
    assert all(COARSE_CONFIDENCE_FLOORS[m] < CONFIDENCE_FLOORS[m] for m in COARSE_CONFIDENCE_FLOORS)


def test_the_loaded_models_carry_both_floors_and_a_mirrored_one_only_its_own():
    from bundle.inference.models import load_model, mirrored

    network, info = load_model("ann", device="cpu")
    assert info["confidence_floor"] == CONFIDENCE_FLOORS["ann"]
    assert info["coarse_confidence_floor"] == COARSE_CONFIDENCE_FLOORS["ann"]
    assert mirrored(network, info)[1]["coarse_confidence_floor"] is None


def _scan(path, zooms, kind: str = "nifti"):
    """A noise volume of a 36x48x36 mm field of view at voxel size ``zooms``; ``kind`` "pixdim_1": a NIfTI whose
    pixdim says 1 mm where its affine (what MONAI's reader and the localisation use) says ``zooms``; "nrrd"."""
    shape = tuple(int(v) for v in np.round(np.array([36, 48, 36]) / np.array(zooms)))
    data = np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)
    if kind == "nrrd":
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(data.transpose(2, 1, 0).copy())
        image.SetSpacing([float(z) for z in zooms])
        sitk.WriteImage(image, str(path))
        return path
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([*zooms, 1.0]), code=2)
    header.set_qform(None, code=0)
    header.set_zooms((1.0, 1.0, 1.0) if kind == "pixdim_1" else zooms)
    nib.save(nib.Nifti1Image(data, None, header), path)
    return path


@pytest.mark.parametrize(
    ("zooms", "kind", "floor"),
    [((1.0, 1.0, 1.0), "nifti", 1.01), ((2.0, 2.0, 3.0), "nifti", 0.0), ((2.0, 2.0, 3.0), "pixdim_1", 0.0),
     ((2.0, 2.0, 3.0), "nrrd", 0.0)],
)  # fmt: skip
def test_a_file_at_2x2x3_mm_is_judged_by_the_coarse_floor(tmp_path, zooms, kind, floor):
    """Real files through the segmenter that the CLI, the bundle run and the Label app use: the same content at
    1 mm is flagged by an unreachable 1 mm floor; at 2x2x3 mm (by the NIfTI's affine, whatever its pixdim says; by
    an NRRD's spacing) the coarse floor (0) applies."""
    from bundle.inference.inferers import make_inferer
    from bundle.inference.volume import VolumeSegmenter
    from bundle.networks import ConvertibleUNet

    torch.manual_seed(0)
    path = _scan(tmp_path / ("scan.nrrd" if kind == "nrrd" else "scan.nii.gz"), zooms, kind)
    segmenter = VolumeSegmenter(ConvertibleUNet(3, 1, 3, (4, 8, 16, 32)), make_inferer(3, [48, 64, 48]),
                                localize="off", confidence_floor=1.01, coarse_confidence_floor=0.0)  # fmt: skip
    seg = segmenter(path)
    assert seg.confidence_floor == floor
    unsure = [f for f in seg.flags() if f.startswith("network unsure")]
    assert bool(unsure) == (floor > 1.0), seg.flags()


def test_every_path_that_builds_the_segmenter_hands_it_both_floors():
    """InferenceSettings.segmenter serves the bundle run, the cohort workers and the Label app."""
    from bundle.inference.settings import InferenceSettings

    settings = InferenceSettings.from_config(model="ann", device="cpu")
    network, info = settings.load()
    segmenter = settings.segmenter(network, info)
    assert segmenter.confidence_floor == CONFIDENCE_FLOORS["ann"]
    assert segmenter.coarse_confidence_floor == COARSE_CONFIDENCE_FLOORS["ann"]


def test_a_scan_coarser_than_any_measured_is_flagged_whatever_its_confidence(tmp_path):
    from bundle.inference.inferers import make_inferer
    from bundle.inference.volume import VolumeSegmenter
    from bundle.networks import ConvertibleUNet

    torch.manual_seed(0)
    path = tmp_path / "thick.nii.gz"
    data = np.random.default_rng(0).normal(100, 20, (36, 48, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.5, 1.0])), path)
    segmenter = VolumeSegmenter(ConvertibleUNet(3, 1, 3, (4, 8, 16, 32)), make_inferer(3, [48, 64, 48]),
                                localize="off", confidence_floor=0.0)  # fmt: skip
    seg = segmenter(path)
    assert seg.acquired_mm == (1.0, 1.0, 4.5)
    assert "voxels up to 4.5 mm: coarser than the 3 mm the models are measured on" in seg.flags()
