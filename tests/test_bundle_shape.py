"""The bundle as MONAI's own tools see it: workflow properties, the generic `evaluating` path, and configs
without copied blocks or list-index overrides."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from bundle.data.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_dataset(root, num_cases=3, seed=1)


@pytest.fixture()
def in_repo():
    cwd = os.getcwd()
    os.chdir(REPO)
    yield
    os.chdir(cwd)


def workflow(config, workflow_type, **overrides):
    from monai.bundle import ConfigWorkflow

    return ConfigWorkflow(
        config_file=str(REPO / "configs" / config),
        meta_file=str(REPO / "configs" / "metadata.json"),
        workflow_type=workflow_type,
        **overrides,
    )


def test_train_workflow_has_every_property(in_repo, tmp_path):
    w = workflow("train.json", "train", output_dir=str(tmp_path), channels=[4, 8, 16, 32], synthetic_cases=4,
                 val_fraction=0.25, num_workers=0)  # fmt: skip
    w.initialize()
    assert w.check_properties() == []
    assert w.train_inferer is not None and w.max_epochs == 60 and w.trainer.state.max_epochs == 60


def test_inference_workflow_has_every_property(in_repo, tmp_path, crops):
    w = workflow("inference.json", "infer", dataset_dir=str(crops / "imagesTr"), output_dir=str(tmp_path), model="ann")
    w.initialize()
    assert w.check_properties() == []
    assert len(w.dataset) == 3


def test_generic_evaluating_writes_masks_in_the_input_geometry_and_never_over_them(in_repo, tmp_path, crops):
    from monai.bundle.scripts import run

    args = dict(config_file=str(REPO / "configs/inference.json"), bundle_root=str(REPO), model="ann",
                dataset_dir=str(crops / "imagesTr"), output_dir=str(tmp_path))  # fmt: skip
    run("evaluating", **args)
    for image in sorted((crops / "imagesTr").glob("*.nii.gz")):
        mask = nib.load(tmp_path / "evaluating" / image.name.replace(".nii.gz", "_seg.nii.gz"))
        assert mask.shape == nib.load(image).shape
        np.testing.assert_allclose(mask.affine, nib.load(image).affine, atol=1e-5)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "evaluating").iterdir()}
    with pytest.raises(SystemExit) as e:
        run("evaluating", **args)
    assert "already holds masks" in str(e.value) and "\n" not in str(e.value)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "evaluating").iterdir()} == before


def _blocks(node, path=""):
    """Every dict and list of at least 3 entries in a config, with where it is."""
    if isinstance(node, dict):
        if len(node) >= 3:
            yield json.dumps(node, sort_keys=True), path
        for k, v in node.items():
            yield from _blocks(v, f"{path}#{k}")
    elif isinstance(node, list):
        if len(node) >= 3 and path != "#imports":
            yield json.dumps(node, sort_keys=True), path
        for i, v in enumerate(node):
            yield from _blocks(v, f"{path}#{i}")


def _shape(node):
    """A block with its values left out: the keys (nested) and the ``_target_`` it builds."""
    if isinstance(node, dict):
        return {k: (v if k == "_target_" else _shape(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return "."


CONFIGS = ["train.json", "inference.json", "multi_gpu_train.json", "train_snn_direct.json", "quick.json",
           "validate.json", "shipped.json"]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_no_block_is_written_twice(config):
    seen = {}
    for text, path in _blocks(json.loads((REPO / "configs" / config).read_text(encoding="utf-8"))):
        assert text not in seen, f"{config}: {path} repeats {seen[text]}"
        seen[text] = path


@pytest.mark.parametrize("config", CONFIGS)
def test_no_two_blocks_have_the_same_shape(config):
    """Two trainers or evaluators wired alike with other values are one factory's job, not two config blocks."""
    seen = {}
    for _, path in _blocks(json.loads((REPO / "configs" / config).read_text(encoding="utf-8"))):
        node = json.loads((REPO / "configs" / config).read_text(encoding="utf-8"))
        for part in path.strip("#").split("#") if path else []:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if not isinstance(node, dict) or len(node) < 4 or path.startswith("#refine_rounds"):
            continue  # (the rounds of refine_rounds are records of values, one per round, not wiring)
        shape = json.dumps(_shape(node), sort_keys=True)
        assert shape not in seen, f"{config}: {path} has the shape of {seen[shape]}"
        seen[shape] = path


def test_stacked_training_configs_change_values_only():
    """quick, multi-GPU, direct and validate set keys; the stages they run are train.json's."""
    for config in ("quick.json", "shipped.json", "multi_gpu_train.json", "train_snn_direct.json", "validate.json"):
        for key, value in json.loads((REPO / "configs" / config).read_text(encoding="utf-8")).items():
            assert not isinstance(value, dict), f"{config}: {key} builds a component"
            assert "#" not in key, f"{config}: {key} reaches into a component"


def test_overrides_address_nothing_by_list_position():
    for config in ("multi_gpu_train.json", "validate.json", "train_snn_direct.json", "evaluate.json"):
        keys = json.loads((REPO / "configs" / config).read_text(encoding="utf-8"))
        for key in keys:
            assert not any(part.isdigit() for part in key.replace("::", "#").split("#")), f"{config}: {key}"
