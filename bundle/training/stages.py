"""Which training stages have finished, so ``--resume true`` skips them and never rewrites their outputs.

A stage that completes writes ``<output_dir>/resume/<stage>/done.json``: when it finished and the
SHA-256 of every checkpoint it read and wrote. With ``--resume true``, a stage whose record still
matches the files on disk is skipped (checkpoints untouched; the log says so). A stage whose inputs
changed since (a retrained ANN under an old conversion) runs again, so the checkpoints of one run always
belong together. Without ``--resume`` every stage runs and rewrites its record.

The decision is taken once per stage and kept: config items that feed a stage (e.g. the calibrated
SNN) ask :meth:`Stages.reuse` first, so a skipped stage does not redo its expensive parts either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bundle.options import as_bool
from bundle.training import distributed

__all__ = ["Stages", "file_sha256"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Stages:
    """Finished-stage records under ``root`` (``<output_dir>/resume``); ``resume`` turns skipping on."""

    def __init__(self, root: str | Path, resume: bool | str = False):
        self.root = Path(root)
        self.resume = as_bool(resume, "resume")
        self._skip: dict[str, bool] = {}

    def record_file(self, stage: str) -> Path:
        return self.root / stage / "done.json"

    def finished(self, stage: str, spec: dict | None = None) -> dict | None:
        """The stage's record if it still holds: every file it names has the recorded content and, given
        ``spec`` (``inputs``, ``outputs``, ``settings``), the stage read and wrote the same files with the
        same settings (e.g. more epochs asked for now: not finished). Else None."""
        path = self.record_file(stage)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            files = {**record["inputs"], **record["outputs"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if spec is not None:
            wanted = {str(Path(p).resolve()) for p in [*spec.get("inputs", []), *spec.get("outputs", [])]}
            if wanted != set(files):
                logger.info(f"[{stage}] its checkpoint paths changed since it finished: it runs again")
                return None
            if record.get("settings") != _jsonable(spec.get("settings") or {}):
                logger.info(f"[{stage}] its settings changed since it finished: it runs again")
                return None
        for name, digest in files.items():
            if not Path(name).is_file() or file_sha256(name) != digest:
                logger.info(f"[{stage}] {name} changed since the stage finished: it runs again")
                return None
        return record

    def skips(self, stage: str, spec: dict) -> bool:
        """Whether ``stage`` is skipped in this run (decided on the first call, then kept)."""
        if stage not in self._skip:
            self._skip[stage] = self.resume and self.finished(stage, spec) is not None
        return self._skip[stage]

    def reuse(self, stage: str, spec: dict, compute: Callable[[], T], reload: Callable[[], T]) -> T:
        """``reload()`` (read what the finished stage saved) if ``stage`` is skipped, else ``compute()``."""
        return reload() if self.skips(stage, spec) else compute()

    def run(self, stage: str, step: Callable[[], Any], spec: dict) -> Any:
        """Run ``step`` unless ``stage`` is skipped; when it returns, record ``spec``: the ``inputs`` and
        ``outputs`` checkpoints (with their SHA-256) and the ``settings`` that must be equal for the stage
        to count as finished on a later resume.

        The record is removed before the step starts: a stage killed half-way is never taken as finished.
        """
        inputs, outputs = list(spec.get("inputs", [])), list(spec.get("outputs", []))
        if self.skips(stage, spec):
            record = self.finished(stage) or {}
            logger.info(
                f"[{stage}] finished earlier ({record.get('finished', '?')}): skipped, its checkpoints "
                f"{', '.join(map(str, outputs))} untouched"
            )
            return None
        distributed.main_only(self._start, stage, inputs)
        distributed.barrier()  # every process sees the stage's resume state as rank 0 left it
        result = step()
        distributed.barrier()
        distributed.main_only(self._record, stage, inputs, outputs, spec.get("settings"))
        return result

    def _start(self, stage: str, inputs: list) -> None:
        """Forget the stage's finished record; and if its inputs changed since it last started (a new
        ANN under an old, half-done conversion or fine-tuning), its epoch state too, so that a resume
        never continues training from another run's weights."""
        self.record_file(stage).unlink(missing_ok=True)
        started = self.root / stage / "started.json"
        current = {str(Path(p).resolve()): file_sha256(p) for p in inputs if Path(p).is_file()}
        try:
            before = json.loads(started.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        stale = [self.root / stage / name for name in ("last.pt", "best.pt") if (self.root / stage / name).is_file()]
        if stale and before != current:
            logger.info(f"[{stage}] its inputs changed since it started (or are unknown): starting it afresh")
            for path in stale:
                path.unlink()
        started.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps(current, indent=2))

    def _record(self, stage: str, inputs: Sequence[str], outputs: Sequence[str], settings: dict | None) -> None:
        missing = [str(p) for p in [*inputs, *outputs] if not Path(p).is_file()]
        if missing:  # e.g. a fine-tuning run that never validated: not finished in any useful sense
            logger.warning(f"warning: [{stage}] not recorded as finished: {', '.join(missing)} missing")
            return
        record = {
            "stage": stage,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "inputs": {str(Path(p).resolve()): file_sha256(p) for p in inputs},
            "outputs": {str(Path(p).resolve()): file_sha256(p) for p in outputs},
            "settings": _jsonable(settings or {}),
        }
        path = self.record_file(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(record, indent=2))
        os.replace(partial, path)


def _jsonable(settings: dict | None) -> Any:
    """``settings`` as they read back from JSON (tuples become lists, paths and devices strings)."""
    return None if settings is None else json.loads(json.dumps(settings, default=str))
