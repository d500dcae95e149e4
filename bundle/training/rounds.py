"""More fine-tuning rounds after ``refine``: the config's ``refine_rounds``, each from a checkpoint an earlier
stage or round wrote, with its own settings and its own randomisation strength.

The shipped SNNs were made by chains of such rounds (``docs/RESULTS.md``); ``configs/shipped.json``
lists them, so one ``training`` command makes the whole chain and ``--resume true`` continues it round by
round. A round is one more :class:`~bundle.training.finetune_stage.FinetuneStage`: the ``refine`` round's
settings with the round's own values over them. A round is written as::

    {"name": "t3_round3", "start": "model_snn_t3_round2.pt", "out": "model_snn_finetuned.pt",
     "epochs": 8, "learning_rate": 5e-5, "ema_decay": 0.99, "randomize": 1.0}

``start`` and ``out`` are file names in ``ckpt_dir`` (or paths); every other key is a fine-tuning setting
(``finetune_<key>`` in ``configs/train.json``), or ``randomize``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from bundle.config_checks import check_values
from bundle.errors import InputError
from bundle.training.context import TrainingRun
from bundle.training.conversion_stage import ConversionSettings
from bundle.training.finetune_stage import FinetuneSettings, FinetuneStage

__all__ = ["RefineRounds"]

TAKEN = ("ann", "convert", "finetune", "refine")  # the stages' own names (resume folders, logs)
SETTINGS = tuple(f.name for f in fields(FinetuneSettings) if f.name != "prefix")
KEYS = ("name", "start", "out", "randomize", *SETTINGS)


class RefineRounds:
    """The rounds of ``rounds`` (the config's ``refine_rounds``), checked when built: a wrong round stops the
    run with one line before anything is trained. ``base``: the ``refine`` round's settings."""

    def __init__(
        self,
        run: TrainingRun,
        base: FinetuneSettings,
        rounds: Sequence[Mapping[str, Any]] | None,
        ckpt_dir: str,
        ann_ckpt: str | None = None,
        conversion: ConversionSettings | None = None,
    ):
        self.stages: list[FinetuneStage] = []
        for i, spec in enumerate(rounds or []):
            try:
                self.stages.append(self._stage(run, base, spec, ckpt_dir, ann_ckpt, conversion))
            except InputError as e:
                raise SystemExit(f"error: refine_rounds[{i}]: {e}") from None

    def _stage(self, run, base, spec, ckpt_dir, ann_ckpt, conversion) -> FinetuneStage:
        if not isinstance(spec, Mapping):
            raise InputError(f"{spec!r} is not a round; write {{\"name\": ..., \"start\": ..., \"out\": ...}}.")
        for key in spec:
            if key not in KEYS:
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise InputError(f"'{key}' is not a setting of a round{hint}.")
        missing = [k for k in ("name", "start", "out") if not spec.get(k)]
        if missing:
            raise InputError(f"{', '.join(missing)} missing (each round needs a name, a start and an out).")
        name = str(spec["name"])
        if name in TAKEN or name in [s.name for s in self.stages]:
            raise InputError(f"name '{name}' is taken (by a stage or an earlier round); give each round its own.")
        own = {k: v for k, v in spec.items() if k in SETTINGS}
        randomize = spec.get("randomize")
        try:  # the rules of the fine-tuning keys, under the names a reader can look up
            check_values({f"finetune_{k}": v for k, v in own.items()})
            check_values({"randomize": randomize} if randomize is not None else {})
        except InputError as e:
            raise InputError(f"({name}) {str(e).removeprefix('finetune_')}") from None
        start, out = (str(Path(ckpt_dir, spec[k])) for k in ("start", "out"))  # an absolute path stays itself
        if Path(start).resolve() == Path(out).resolve():
            raise InputError(f"({name}) start and out are the same file; a round writes a file of its own.")
        settings = replace(base, **own)
        return FinetuneStage(run, settings, name=name, start_ckpt=start, out_ckpt=out, ann_ckpt=ann_ckpt,
                             conversion=conversion, randomize=randomize)  # fmt: skip

    def run(self) -> None:
        """Each round in order (a finished one is skipped with ``--resume true``)."""
        for stage in self.stages:
            stage.run()
