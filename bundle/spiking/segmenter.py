"""A spiking network as MONAI sees any network: image in, class scores out.

:class:`SpikingSegmenter` resets the neurons, presents the same image for ``T`` timesteps and reads the
output layer out, so ``SupervisedEvaluator``, ``SlidingWindowInferer`` and the savers use it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bundle.spiking.neurons import IFNeuron

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
        out_threshold: threshold of the spiking output layer (``"rate"`` only), e.g. a high percentile
            of the ANN's positive logits on calibration images.
        multi_step: run all T steps as one ``[T, B, ...]`` tensor (faster on GPU, more memory).

    Input ``[B, C, *spatial]``, output ``[B, K, *spatial]``.
    """

    def __init__(
        self,
        snn: nn.Module,
        timesteps: int = 16,
        readout: str = "membrane",
        out_threshold: float = 1.0,
        multi_step: bool = False,
    ):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS} but is {readout!r}.")
        if int(timesteps) < 1:
            raise ValueError(f"timesteps must be >= 1 but is {timesteps!r}.")
        self.snn = snn
        self.timesteps = int(timesteps)
        self.readout = readout
        self.multi_step = bool(multi_step)
        self.out_neuron = IFNeuron(float(out_threshold), v_init=0.5) if readout == "rate" else None
        functional.set_step_mode(self, "m" if self.multi_step else "s")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores_at(x, [self.timesteps])[self.timesteps]

    def scores_at(self, x: torch.Tensor, steps: Sequence[int]) -> dict[int, torch.Tensor]:
        """Scores after each of ``steps`` timesteps from one run of ``max(steps)`` steps."""
        functional.reset_net(self)
        horizon, wanted = max(steps), set(steps)
        if self.multi_step:
            currents = self.snn(x.unsqueeze(0).expand(horizon, *x.shape))  # [T, B, K, ...]
            if self.out_neuron is not None:
                currents = self.out_neuron(currents) * self.out_neuron.v_threshold
            cumulative = currents.cumsum(0)
            return {t: cumulative[t - 1] / t for t in sorted(wanted)}
        out, total = {}, 0.0
        for t in range(1, horizon + 1):
            current = self.snn(x)
            if self.out_neuron is not None:
                current = self.out_neuron(current) * self.out_neuron.v_threshold
            total = total + current
            if t in wanted:
                out[t] = total / t
        return out
