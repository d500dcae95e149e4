"""Weight averaging (EMA) for any stage: the network is validated, and its best checkpoint saved, with an
exponential moving average of its weights, while training goes on with the live ones.

Spiking fine-tuning at T=4 is noisy: the same recipe's validation Dice moves by about 0.01 from one
epoch to the next and between runs, so a best-epoch checkpoint is partly luck. An average over the last
few hundred steps is a flatter, more reproducible model. torch's ``AveragedModel`` keeps a second copy
of the module (as does ignite's ``EMAHandler``), which MONAI's evaluator and ``CheckpointSaver`` would then
have to be pointed at; swapping the averaged values into the one network for the length of a validation
keeps every reference (evaluator, saver, spike counters) unchanged, hence this handler.
"""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["WeightAverage"]

logger = logging.getLogger(__name__)


class WeightAverage:
    """Keep ``avg = d * avg + (1 - d) * w`` after every training iteration, for every floating-point
    parameter and buffer of ``network`` (BatchNorm statistics and learnable thresholds included);
    integer buffers are copied. ``evaluator`` sees the averaged values from its start to its end.

    ``d`` ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the first epochs are not
    dominated by the starting weights. ``decay`` 0 switches the handler off (nothing is attached).
    Resume keeps the average through :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(self, network: nn.Module, evaluator: Engine, decay: float = 0.0):
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"weight-average decay must be in [0, 1), got {decay}")
        self.network = network
        self.evaluator = evaluator
        self.decay = decay
        self.updates = 0
        self.average: dict[str, torch.Tensor] | None = None
        self._live: dict[str, torch.Tensor] | None = None

    @property
    def enabled(self) -> bool:
        return self.decay > 0.0

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        self.evaluator.add_event_handler(Events.STARTED, self.swap_in)
        self.evaluator.add_event_handler(Events.COMPLETED, self.swap_out)
        logger.info(f"validating an exponential moving average of the weights (decay {self.decay})")

    @torch.no_grad()
    def update(self, engine: Engine | None = None) -> None:
        current = self.network.state_dict()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in current.items()}
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for key, value in current.items():
            if value.is_floating_point():
                self.average[key].lerp_(value.detach().to(self.average[key].dtype), 1.0 - d)
            else:
                self.average[key].copy_(value)
        self.updates += 1

    @torch.no_grad()
    def swap_in(self, engine: Engine | None = None) -> None:
        if self.average is None or self._live is not None:
            return
        current = self.network.state_dict()
        self._live = {k: v.detach().clone() for k, v in current.items()}
        for key, value in current.items():
            value.copy_(self.average[key])

    @torch.no_grad()
    def swap_out(self, engine: Engine | None = None) -> None:
        if self._live is None:
            return
        for key, value in self.network.state_dict().items():
            value.copy_(self._live[key])
        self._live = None

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state.get("updates", 0))
        average = state.get("average")
        if average is None:
            self.average = None
            return
        current = self.network.state_dict()
        self.average = {k: v.detach().to(current[k].device).clone() for k, v in average.items()}
