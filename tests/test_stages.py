"""Finished-stage records: what makes a stage count as finished on --resume, and what does not."""

import json

import pytest
import torch
from ignite.engine import Events

from bundle.training.stages import Stages


def _spec(tmp_path, epochs=2, out="model.pt"):
    return {"inputs": [str(tmp_path / "in.pt")], "outputs": [str(tmp_path / out)], "settings": {"epochs": epochs}}


def test_a_stage_is_skipped_only_while_its_files_paths_and_settings_are_unchanged(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"ann")
    calls = []
    Stages(tmp_path / "resume", resume=False).run("convert", lambda: (tmp_path / "model.pt").write_bytes(b"snn"),
                                                  _spec(tmp_path))  # fmt: skip
    record = json.loads((tmp_path / "resume" / "convert" / "done.json").read_text(encoding="utf-8"))
    assert record["settings"] == {"epochs": 2} and len(record["inputs"]) == len(record["outputs"]) == 1

    def run(spec, resume=True):
        return Stages(tmp_path / "resume", resume=resume).run("convert", lambda: calls.append(1), spec)

    run(_spec(tmp_path))
    assert calls == []  # finished: skipped
    run(_spec(tmp_path), resume=False)
    assert calls == [1]  # no --resume: every stage runs
    for changed in (_spec(tmp_path, epochs=3), _spec(tmp_path, out="elsewhere.pt")):
        calls.clear()
        run(changed)
        assert calls == [1], changed  # other settings or another checkpoint path: not finished
        Stages(tmp_path / "resume").run("convert", lambda: None, _spec(tmp_path))  # restore the record
    (tmp_path / "in.pt").write_bytes(b"a retrained ann")
    calls.clear()
    run(_spec(tmp_path))
    assert calls == [1]  # its input changed since: it runs again


def test_the_decision_is_taken_once_per_stage(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"ann")
    (tmp_path / "model.pt").write_bytes(b"snn")
    Stages(tmp_path / "resume").run("convert", lambda: None, _spec(tmp_path))
    stages = Stages(tmp_path / "resume", resume=True)
    assert stages.reuse("convert", _spec(tmp_path), lambda: "computed", lambda: "reloaded") == "reloaded"
    (tmp_path / "model.pt").write_bytes(b"changed after the decision")
    assert stages.skips("convert", _spec(tmp_path))  # kept: reuse() and run() never disagree within a run


def test_a_stage_whose_inputs_changed_starts_afresh_instead_of_resuming(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"ann")
    stage_dir = tmp_path / "resume" / "finetune"

    def killed_half_way():  # writes its epoch state, then dies before finishing
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "last.pt").write_bytes(b"epoch 1 of the old conversion")
        raise KeyboardInterrupt

    spec = {"inputs": [str(tmp_path / "in.pt")], "outputs": [str(tmp_path / "out.pt")], "settings": {}}
    try:
        Stages(tmp_path / "resume", resume=True).run("finetune", killed_half_way, spec)
    except KeyboardInterrupt:
        pass
    seen = []
    Stages(tmp_path / "resume", resume=True).run("finetune", lambda: seen.append((stage_dir / "last.pt").exists()), spec)
    assert seen == [True]  # same inputs: resumed from its epoch state
    (tmp_path / "in.pt").write_bytes(b"a new conversion")
    Stages(tmp_path / "resume", resume=True).run("finetune", lambda: seen.append((stage_dir / "last.pt").exists()), spec)
    assert seen == [True, False]  # new inputs: the old epoch state is gone, training starts afresh


@pytest.mark.parametrize("score, saved", [(0.5, False), (0.9, True)])
def test_a_resumed_best_checkpoint_is_replaced_only_by_a_better_one(tmp_path, score, saved):
    """BestSoFar restores the saver's ranking through its public load_state_dict (nothing private read)."""
    from ignite.engine import Engine
    from monai.handlers import CheckpointSaver

    from bundle.training.resume import BestSoFar

    net = torch.nn.Linear(1, 1)
    evaluator = Engine(lambda engine, batch: None)
    evaluator.state.metrics = {}

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _metric(engine):  # before the saver: it reads the key metric at the same event
        engine.state.metrics["val_mean_dice"] = score

    saver = CheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_name="val_mean_dice",
                            key_metric_filename="best.pt")  # fmt: skip
    saver.attach(evaluator)
    (tmp_path / "best.pt").write_bytes(b"the best of the run before the resume")
    BestSoFar(evaluator, [saver]).load_state_dict({"best_metric": 0.8, "best_metric_epoch": 3})
    assert evaluator.state.best_metric == 0.8
    evaluator.run([0], max_epochs=1)
    replaced = (tmp_path / "best.pt").read_bytes() != b"the best of the run before the resume"
    assert replaced == saved
