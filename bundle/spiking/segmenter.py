"""A spiking network as MONAI sees any network: image in, class scores out.

:class:`SpikingSegmenter` resets the neurons, presents the same image for ``T`` timesteps and reads the
output layer out, so ``SupervisedEvaluator``, ``SlidingWindowInferer`` and the savers use it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bundle.options import as_bool
from bundle.spiking.neurons import IFNeuron, set_kernel

__all__ = ["READOUTS", "SpikingSegmenter"]

READOUTS = ("membrane", "rate")


class SpikingSegmenter(nn.Module):
    """Run a converted SNN for ``timesteps`` steps per input and return class scores.

    Args:
        snn: the spiking network (single-step ``fx.GraphModule`` from :func:`bundle.spiking.conversion.convert`).
        timesteps: T, the number of steps each image is presented.
        readout: how the last (1x1 convolution) layer is read:
            ``"membrane"`` — a non-spiking output layer that integrates its input; the scores are its
            membrane potential divided by T (the average output current);
            ``"rate"`` — a spiking output layer (IF neurons with threshold ``out_threshold``); the
            scores are spike counts x threshold / T. Negative scores cannot be represented.
        out_threshold: threshold of the spiking output layer (needed for ``"rate"``), e.g. a high
            percentile of the ANN's positive logits on calibration images.
        multi_step: run all T steps as one ``[T, B, ...]`` tensor (faster on GPU, more memory).
        kernel: the neurons' inference step, ``"eager"`` or ``"compiled"`` (one fused kernel per neuron
            type, see :mod:`bundle.spiking.kernels`); training always runs the eager autograd step.

    Input ``[B, C, *spatial]``, output ``[B, K, *spatial]``.
    """

    def __init__(
        self,
        snn: nn.Module,
        timesteps: int = 16,
        readout: str = "membrane",
        out_threshold: float | None = None,
        multi_step: bool = False,
        kernel: str = "eager",
    ):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS} but is {readout!r}.")
        if int(timesteps) < 1:
            raise ValueError(f"timesteps must be >= 1 but is {timesteps!r}.")
        self.snn = snn
        self.timesteps = int(timesteps)
        self.readout = readout
        self.multi_step = as_bool(multi_step, "multi_step")
        if readout == "rate" and out_threshold is None:
            raise ValueError("readout 'rate' needs out_threshold (see bundle.spiking.conversion.output_threshold).")
        # with a threshold, the spiking output layer runs alongside, so readouts_at can compare both
        self.out_neuron = None if out_threshold is None else IFNeuron(float(out_threshold), v_init=0.5)
        functional.set_step_mode(self, "m" if self.multi_step else "s")
        set_kernel(self, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores_at(x, [self.timesteps])[self.timesteps]

    def scores_at(self, x: torch.Tensor, steps: Sequence[int]) -> dict[int, torch.Tensor]:
        """This readout's scores after each of ``steps`` timesteps, from one run of ``max(steps)`` steps."""
        return self.readouts_at(x, steps)[self.readout]

    def readouts_at(
        self, x: torch.Tensor, steps: Sequence[int], on_step: Callable[[int], None] | None = None
    ) -> dict[str, dict[int, torch.Tensor]]:
        """Both readouts after each of ``steps`` timesteps (``"rate"`` only when this segmenter has one).

        ``on_step(t)`` is called after each wanted step (e.g. to snapshot an activity monitor).
        """
        functional.reset_net(self)
        horizon, wanted = max(steps), sorted(set(steps))
        out: dict[str, dict[int, torch.Tensor]] = {
            r: {} for r in ("membrane", "rate") if r == "membrane" or self.out_neuron
        }
        if self.multi_step:
            currents = self.snn(x.unsqueeze(0).expand(horizon, *x.shape))  # [T, B, K, ...]
            membrane = currents.cumsum(0)
            rate = (self.out_neuron(currents) * self.out_neuron.v_threshold).cumsum(0) if self.out_neuron else None
            for t in wanted:
                out["membrane"][t] = membrane[t - 1] / t
                if rate is not None:
                    out["rate"][t] = rate[t - 1] / t
                if on_step:
                    on_step(t)
            return out
        membrane, rate = 0.0, 0.0
        for t in range(1, horizon + 1):
            current = self.snn(x)
            membrane = membrane + current  # a non-spiking output layer integrates its input current
            if self.out_neuron is not None:
                rate = rate + self.out_neuron(current) * self.out_neuron.v_threshold
            if t in wanted:
                out["membrane"][t] = membrane / t
                if self.out_neuron is not None:
                    out["rate"][t] = rate / t
                if on_step:
                    on_step(t)
        return out
