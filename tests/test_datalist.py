"""Datalists from Decathlon, paired and flat folders; the split; and every bad input a user can hand us."""

import json

import numpy as np
import pytest
from conftest import make_pair, write_nifti

from bundle.data.datalist import DatasetError, check_cases, find_pairs, prepare_datalists, split_datalist
from bundle.data.synthetic import write_synthetic_dataset


def _decathlon(root, n=4):
    for i in range(n):
        make_pair(root, f"case_{i}")
    entries = [{"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"} for i in range(n)]
    (root / "dataset.json").write_text(json.dumps({"training": entries}))
    return root


def test_decathlon_folder(tmp_path):
    pairs = find_pairs(_decathlon(tmp_path))
    assert [p["image"].rsplit("/", 1)[-1] for p in pairs] == [f"case_{i}.nii.gz" for i in range(4)]
    assert all(p["label"].endswith(p["image"].rsplit("/", 1)[-1]) for p in pairs)


@pytest.mark.parametrize("images, labels", [("images", "labels"), ("imagesTr", "labelsTr")])
def test_paired_folders(tmp_path, images, labels):
    for i in range(3):
        make_pair(tmp_path, f"c{i}", images=images, labels=labels)
    (tmp_path / images / "notes.txt").write_text("not an image")
    pairs = find_pairs(tmp_path)
    assert len(pairs) == 3 and all(f"/{labels}/" in p["label"] for p in pairs)


def test_flat_folder(tmp_path):
    for i in range(2):
        make_pair(tmp_path / "x", f"c{i}")
        (tmp_path / "x/imagesTr" / f"c{i}.nii.gz").rename(tmp_path / f"c{i}.nii.gz")
        (tmp_path / "x/labelsTr" / f"c{i}.nii.gz").rename(tmp_path / f"c{i}_seg.nii.gz")
    pairs = find_pairs(tmp_path)
    assert [p["label"].rsplit("/", 1)[-1] for p in pairs] == ["c0_seg.nii.gz", "c1_seg.nii.gz"]


def test_a_decathlon_folder_lists_all_cases(decathlon):
    pairs = find_pairs(decathlon)
    assert len(pairs) == len(json.loads((decathlon / "dataset.json").read_text(encoding="utf-8"))["training"])


def test_missing_dataset_dir(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'}: does not exist"):
        find_pairs(tmp_path / "nope")


def test_empty_dataset_dir(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path}: holds no NIfTI"):
        find_pairs(tmp_path)


def test_image_without_label(tmp_path):
    make_pair(tmp_path, "ok")
    write_nifti(tmp_path / "imagesTr" / "lonely.nii.gz", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(DatasetError, match=r"lonely\.nii\.gz: has no label"):
        find_pairs(tmp_path)


def test_decathlon_entry_without_label(tmp_path):
    _decathlon(tmp_path, 2)
    (tmp_path / "labelsTr" / "case_1.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"case_1\.nii\.gz: has no label"):
        find_pairs(tmp_path)


def test_corrupt_nifti(tmp_path):
    _decathlon(tmp_path, 3)
    bad = tmp_path / "imagesTr" / "case_1.nii.gz"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated download
    with pytest.raises(DatasetError, match=r"case_1\.nii\.gz: unreadable NIfTI"):
        check_cases(find_pairs(tmp_path))


def test_not_gzip_at_all(tmp_path):
    _decathlon(tmp_path, 2)
    (tmp_path / "labelsTr" / "case_0.nii.gz").write_bytes(b"<html>404</html>")
    with pytest.raises(DatasetError, match=r"labelsTr/case_0\.nii\.gz: unreadable NIfTI"):
        check_cases(find_pairs(tmp_path))


def test_shape_mismatch(tmp_path):
    _decathlon(tmp_path, 2)
    write_nifti(tmp_path / "labelsTr" / "case_0.nii.gz", np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"labelsTr/case_0\.nii\.gz: shape \(5, 5, 5\) does not match"):
        check_cases(find_pairs(tmp_path))


def test_bad_label_values_and_nan_image(tmp_path):
    _decathlon(tmp_path, 2)
    write_nifti(tmp_path / "labelsTr" / "case_0.nii.gz", np.full((12, 14, 10), 7, np.uint8))
    write_nifti(tmp_path / "imagesTr" / "case_1.nii.gz", np.full((12, 14, 10), np.nan, np.float32))
    with pytest.raises(DatasetError, match=r"case_0\.nii\.gz: label values \[7\].*\(and 1 more"):
        check_cases(find_pairs(tmp_path))


def test_split_is_deterministic_and_disjoint():
    pairs = [{"image": f"/d/{i:03d}.nii.gz", "label": f"/l/{i:03d}.nii.gz"} for i in range(50)]
    train, val = split_datalist(pairs, 0.2, seed=3)
    train2, val2 = split_datalist(list(reversed(pairs)), 0.2, seed=3)  # listing order must not matter
    assert val == val2 and train == train2
    assert len(val) == 10 and not {p["image"] for p in val} & {p["image"] for p in train}
    assert split_datalist(pairs, 0.2, seed=4)[1] != val


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        split_datalist([{"image": "a", "label": "b"}] * 4, 1.5)


def test_synthetic_default(tmp_path):
    lists = prepare_datalists(None, val_fraction=0.25, seed=1, synthetic_dir=str(tmp_path / "syn"), synthetic_cases=4)
    assert len(lists["train"]) == 3 and len(lists["val"]) == 1
    stamp = (tmp_path / "syn" / "dataset.json").stat().st_mtime_ns
    write_synthetic_dataset(tmp_path / "syn", 4, 1)  # same settings: reused, not rewritten
    assert (tmp_path / "syn" / "dataset.json").stat().st_mtime_ns == stamp


def test_synthetic_cases_look_like_task04(tmp_path):
    import nibabel as nib

    root = write_synthetic_dataset(tmp_path, 6, seed=2)
    for entry in json.loads((root / "dataset.json").read_text(encoding="utf-8"))["training"]:
        image = np.asanyarray(nib.load(root / entry["image"]).dataobj)
        label = np.asanyarray(nib.load(root / entry["label"]).dataobj)
        assert image.shape == label.shape and 31 <= image.shape[0] <= 43 and 40 <= image.shape[1] <= 59
        assert set(np.unique(label)) == {0, 1, 2}
        # the head (1) lies anterior (larger RAS y) of the body (2)
        y = np.arange(label.shape[1])[None, :, None]
        assert (y * (label == 1)).sum() / (label == 1).sum() > (y * (label == 2)).sum() / (label == 2).sum()
        assert 500 < (label > 0).sum() < 20000


def test_label_off_its_image_is_refused_and_float_noise_is_not(tmp_path):
    _decathlon(tmp_path, 2)
    shifted = np.eye(4)
    shifted[0, 3] = 50.0  # the label's grid 50 mm away from its image's
    write_nifti(tmp_path / "labelsTr" / "case_0.nii.gz", np.zeros((12, 14, 10), np.uint8), shifted)
    with pytest.raises(DatasetError, match=r"labelsTr/case_0\.nii\.gz: its affine places voxels up to 50\.00 mm"):
        check_cases(find_pairs(tmp_path))
    rounding = np.eye(4)
    rounding[:3, 3] = 1e-5  # what float32 headers written by two tools differ by
    write_nifti(tmp_path / "labelsTr" / "case_0.nii.gz", np.zeros((12, 14, 10), np.uint8), rounding)
    check_cases(find_pairs(tmp_path))


def test_training_seed_does_not_move_the_validation_split_and_split_seed_does(decathlon, tmp_path):
    from monai.bundle import ConfigParser

    from conftest import REPO

    def val_cases(**overrides) -> list[str]:
        parser = ConfigParser()
        parser.read_config(str(REPO / "configs" / "train.json"))
        parser.update({"bundle_root": str(REPO), "dataset_dir": str(decathlon), "output_dir": str(tmp_path), **overrides})
        return sorted(d["image"] for d in parser.get_parsed_content("context").datalists["val"])

    base = val_cases()
    assert base == val_cases(seed=1)  # another training seed keeps the shipped models' validation cases
    assert base != val_cases(split_seed=1)
