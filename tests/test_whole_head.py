"""Whole-head input and scanner formats through batch inference: the same code path as every image.

Real files through real readers: a Task04 case written as NIfTI, NRRD, MHA and a DICOM series (by
SimpleITK) gives the same mask; a crop takes ``localize auto`` without registration; a whole head made
from the shipped template is localised on both sides, pasted back into its own grid, reported and
pictured; a non-brain image is one line and the batch goes on.
"""

import csv
import time

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import write_nifti

from bundle.cli import main
from bundle.localization import load_template
from bundle.localization.crops import from_nifti
from bundle.localization.synthetic import make_case

CASE = "hippocampus_001"


def _int16_case(task04) -> sitk.Image:
    """A real Task04 image as scanners store it (int16), in SimpleITK's frame, from nibabel's view of it."""
    img = nib.load(task04 / "imagesTr" / f"{CASE}.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float64)
    data = np.round(data / np.percentile(data, 99.9) * 1000).astype(np.int16)
    return from_nifti((data, img.affine))


def _write_dicom_series(image: sitk.Image, folder, series_uid: str = "1.2.826.0.1.3680043.2.1125.1.1") -> None:
    """One file per slice with the tags a reader needs for the geometry (as SimpleITK's DICOM example)."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.10g}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))
    spacing = image.GetSpacing()
    for i in range(image.GetDepth()):
        slice_ = image[:, :, i]
        position = image.TransformIndexToPhysicalPoint((0, 0, i))
        for tag, value in {
            "0008|0060": "MR",
            "0010|0010": "Test^Hippocampus",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(i + 1),
            "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{spacing[1]:.10g}\\{spacing[0]:.10g}",
            "0018|0050": f"{spacing[2]:.10g}",
            "0008|0018": f"{series_uid}.{i + 1}",
        }.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{i:03d}.dcm"))
        writer.Execute(slice_)


@pytest.fixture(scope="module")
def formats(task04, tmp_path_factory):
    """The same int16 Task04 case in every format, segmented by the ANN (fast) into one folder."""
    root = tmp_path_factory.mktemp("formats")
    image = _int16_case(task04)
    (root / "in").mkdir()
    sitk.WriteImage(image, str(root / "in" / "case_nrrd.nrrd"))
    sitk.WriteImage(image, str(root / "in" / "case_mha.mha"))
    _write_dicom_series(image, root / "in" / "case_dicom")
    img = nib.load(task04 / "imagesTr" / f"{CASE}.nii.gz")
    arr = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    write_nifti(root / "in" / "case_nifti.nii.gz", arr, img.affine)
    status = main(["segment", str(root / "in"), str(root / "out"), "--model", "ann", "--quiet"])
    assert status == 0
    return root


def test_nrrd_mha_and_dicom_give_the_niftis_mask(formats):
    reference = nib.load(formats / "out" / "case_nifti.nii.gz")
    ref = np.asanyarray(reference.dataobj)
    assert set(np.unique(ref)) == {0, 1, 2}
    for name in ("case_nrrd", "case_mha", "case_dicom"):
        mask = nib.load(formats / "out" / f"{name}.nii.gz")  # named after the input (a DICOM folder: its name)
        assert mask.shape == reference.shape
        np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-3)
        agree = float((np.asanyarray(mask.dataobj) == ref).mean())
        assert agree == 1.0 if name != "case_dicom" else agree > 0.999, (name, agree)
    rows = {r["case"]: r for r in csv.DictReader((formats / "out" / "volumes.csv").open())}
    assert {r["localized"] for r in rows.values()} == {"no"}  # crops: no registration


def test_several_dicom_series_in_one_folder_is_one_clear_error(task04, tmp_path, capsys):
    image = _int16_case(task04)
    _write_dicom_series(image, tmp_path / "in" / "two", "1.2.3.4.1")
    _write_dicom_series(image, tmp_path / "tmp2", "1.2.3.4.2")
    for f in (tmp_path / "tmp2").iterdir():
        f.rename(tmp_path / "in" / "two" / f"b_{f.name}")
    write_nifti(tmp_path / "in" / "ok.nii.gz", sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32))
    assert main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "ann", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'in' / 'two'}: holds 2 DICOM series" in err and "its own folder" in err
    assert (tmp_path / "out" / "ok.nii.gz").is_file()  # the batch went on


def test_a_task04_crop_takes_auto_without_registration_and_gives_the_same_mask(task04, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / f"{CASE}.nii.gz").write_bytes((task04 / "imagesTr" / f"{CASE}.nii.gz").read_bytes())
    assert main(["segment", str(src), str(tmp_path / "auto"), "--model", "ann"]) == 0
    seen = capsys.readouterr()
    assert "a hippocampus crop; not localised" in seen.err  # the decision, logged per image
    assert (seen.out + seen.err).count("1 segmented, 0 skipped") == 1 and "1 segmented" in seen.out  # once, stdout
    assert main(["segment", str(src), str(tmp_path / "off"), "--model", "ann", "--quiet", "--localize", "off"]) == 0
    auto = np.asanyarray(nib.load(tmp_path / "auto" / f"{CASE}.nii.gz").dataobj)
    off = np.asanyarray(nib.load(tmp_path / "off" / f"{CASE}.nii.gz").dataobj)
    assert np.array_equal(auto, off)
    row = next(csv.DictReader((tmp_path / "auto" / "volumes.csv").open()))
    assert row["localized"] == "no" and row["similarity"] == "" and row["left_ml"] == ""


@pytest.fixture(scope="module")
def whole_head(tmp_path_factory):
    """A whole head from the shipped (2 mm) template: rotated, shifted, resampled to 1.5 mm in LPS order,
    with a bias field and noise; a noise volume of the same size that is no head at all, and one in 6.5 mm slices."""
    root = tmp_path_factory.mktemp("head")
    template = load_template().image
    case = make_case(template, np.random.default_rng(3), orientation="LPS", spacing_range=(1.5, 1.5),
                     max_rotation_deg=10, max_translation_mm=15)  # fmt: skip
    (root / "in").mkdir()
    sitk.WriteImage(case.image, str(root / "in" / "head.nii.gz"))
    noise = sitk.GetArrayFromImage(case.image) * 0 + np.random.default_rng(0).random(sitk.GetArrayFromImage(case.image).shape)
    noisy = sitk.GetImageFromArray(noise.astype(np.float32))
    noisy.CopyInformation(case.image)
    sitk.WriteImage(noisy, str(root / "in" / "noise.nii.gz"))
    thick = sitk.GetImageFromArray(np.random.default_rng(1).random((24, 200, 200)).astype(np.float32))
    thick.SetSpacing((0.9, 0.9, 6.5))  # a clinical scan's slices, nothing the template fits either
    sitk.WriteImage(thick, str(root / "in" / "thick.nii.gz"))
    start = time.perf_counter()
    status = main(["segment", str(root / "in"), str(root / "out"), "--model", "ann", "--quiet", "--qc"])
    return root, status, time.perf_counter() - start


def test_whole_head_is_localised_on_both_sides_and_pasted_into_its_grid(whole_head):
    root, status, _ = whole_head
    assert status == 1  # noise.nii.gz failed, head.nii.gz did not
    image, mask = nib.load(root / "in" / "head.nii.gz"), nib.load(root / "out" / "head.nii.gz")
    assert mask.shape == image.shape
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-3)
    rows = {r["case"]: r for r in csv.DictReader((root / "out" / "volumes.csv").open())}
    head = rows["head"]
    assert head["status"] == "ok" and head["localized"] == "yes" and float(head["similarity"]) > 0.5
    for side in ("left", "right"):  # both found, each with head and body
        assert float(head[f"{side}_anterior_mm3"]) > 0 and float(head[f"{side}_posterior_mm3"]) > 0
    # the two hippocampi are on either side of the midline, in the image's own world coordinates
    data = np.asanyarray(mask.dataobj)
    xs = nib.affines.apply_affine(mask.affine, np.argwhere(data > 0))[:, 0]
    assert xs.min() < -10 and xs.max() > 10
    assert (root / "out" / "qc" / "head.png").stat().st_size > 10_000


def test_an_image_the_template_does_not_fit_is_one_line_and_the_batch_goes_on(whole_head, capsys):
    root, _, _ = whole_head
    rows = {r["case"]: r for r in csv.DictReader((root / "out" / "volumes.csv").open())}
    assert rows["noise"]["status"] == "failed"
    assert rows["noise"]["message"].startswith(f"{root / 'in' / 'noise.nii.gz'}: the brain template does not fit")
    assert not (root / "out" / "noise.nii.gz").exists()
    assert rows["noise"]["message"].endswith("is it a whole-head T1-weighted MRI?")
    # a scan coarser than any measured is told so, rather than asked whether it is a head
    assert rows["thick"]["status"] == "failed"
    assert rows["thick"]["message"].endswith("its voxels are up to 6.5 mm, coarser than the 3 mm this bundle is "
                                             "measured on")  # fmt: skip


def test_evaluate_reads_nrrd_mha_and_dicom_pairs(formats, task04, tmp_path):
    """images/ + labels/ in scanner formats: each image is scored against its own label, like the NIfTI."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    img = nib.load(task04 / "labelsTr" / f"{CASE}.nii.gz")
    label = from_nifti((np.asanyarray(img.dataobj).round().astype(np.uint8), img.affine))
    for name in ("case_nrrd.nrrd", "case_mha.mha"):
        (data / "images" / name).write_bytes((formats / "in" / name).read_bytes())
        sitk.WriteImage(label, str(data / "labels" / name))
    import shutil

    shutil.copytree(formats / "in" / "case_dicom", data / "images" / "case_dicom")
    sitk.WriteImage(label, str(data / "labels" / "case_dicom.nii.gz"))
    assert main(["evaluate", str(data), str(tmp_path / "eval"), "--model", "ann", "--quiet", "--overlays", "1"]) == 0
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "eval" / "metrics.csv").open())}
    assert set(rows) == {"case_nrrd", "case_mha", "case_dicom"}
    for row in rows.values():
        assert row["status"] == "ok" and float(row["dice_anterior"]) > 0.75 and float(row["dice_posterior"]) > 0.75


def test_a_head_from_another_site_is_segmented_or_flagged_never_silently_wrong(tmp_path):
    """A whole head with another contrast (gamma 0.6) saved as a FreeSurfer-style 0-255 volume: it is localised,
    its row carries the network's confidence, and a side outside 2-5.5 mL never goes out unflagged."""
    import torch

    from bundle.data.randomization import pipeline_rescale

    template = load_template().image
    case = make_case(template, np.random.default_rng(5), orientation="RAS", spacing_range=(1.0, 1.0),
                     max_rotation_deg=8, max_translation_mm=10, gamma_range=(0.6, 0.6))  # fmt: skip
    arr = pipeline_rescale(torch.as_tensor(sitk.GetArrayFromImage(case.image))[None], white=110.0)[0].numpy()
    image = sitk.GetImageFromArray(arr.astype(np.uint8))
    image.CopyInformation(case.image)
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "fs_head.nii.gz"))
    status = main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "ann", "--quiet"])
    row = next(csv.DictReader((tmp_path / "out" / "volumes.csv").open()))
    assert status == 0 and row["status"] == "ok" and row["localized"] == "yes"
    assert 0.0 <= float(row["confidence"]) <= 1.0
    plausible = all(2.0 <= float(row[f"{side}_ml"]) <= 5.5 for side in ("left", "right"))
    assert plausible or row["flag"], row
