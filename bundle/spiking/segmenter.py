"""A spiking network as MONAI sees any network: image in, class scores out.

:class:`SpikingSegmenter` resets the neurons, presents the same image for ``T`` timesteps and reads the
output layer out, so ``SupervisedEvaluator``, ``SlidingWindowInferer`` and the savers use it unchanged.

Adaptive T (inference only, ``adaptive="stable"``): each input of the batch (a sliding window) stops as
soon as its class map, the argmax of the running readout, has changed in at most ``tolerance`` of its
voxels for ``patience`` consecutive steps; ``timesteps`` is then the most steps a window may take. The
decision is per window, never per batch: a finished window leaves the batch (its neuron states are
dropped), so the others run on without it, and a window's result never depends on which windows
shared its batch (``sw_batch_size``). ``last_steps`` holds the steps each input of the last call used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from bundle.inference.catalog import ADAPTIVE_RULES
from bundle.options import as_bool
from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron, set_kernel

__all__ = ["ADAPTIVE_RULES", "READOUTS", "SpikingSegmenter"]

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
        adaptive: ``"off"`` (every input runs ``timesteps`` steps) or ``"stable"`` (in eval mode, each
            input stops once its class map is stable; ``timesteps`` is then the maximum). Single-step only.
        patience: ``"stable"``: consecutive steps whose class map must each be stable (earliest stop:
            step ``patience + 1``).
        tolerance: ``"stable"``: fraction of an input's voxels whose class may change from one step to
            the next while the map still counts as stable. 0 is too strict in practice: the shipped SNN's
            class map on a 48x64x48 Task04 window still flips ~0.05% of its voxels per step at T=8;
            1e-3 (about 150 voxels) stops it at 5-6 steps of 8 for -0.001 Dice (docs/RESULTS.md).

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
        adaptive: str = "off",
        patience: int = 1,
        tolerance: float = 1e-3,
    ):
        super().__init__()
        if adaptive not in ADAPTIVE_RULES:
            raise ValueError(f"adaptive must be one of {ADAPTIVE_RULES} but is {adaptive!r}.")
        if int(patience) != patience or int(patience) < 1:
            raise ValueError(f"patience must be a whole number >= 1 but is {patience!r}.")
        if not 0.0 <= float(tolerance) < 1.0:
            raise ValueError(f"tolerance must be a fraction in [0, 1) but is {tolerance!r}.")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS} but is {readout!r}.")
        if int(timesteps) < 1:
            raise ValueError(f"timesteps must be >= 1 but is {timesteps!r}.")
        self.snn = snn
        self.timesteps = int(timesteps)
        self.readout = readout
        self.multi_step = as_bool(multi_step, "multi_step")
        if adaptive != "off" and self.multi_step:
            raise ValueError(
                "adaptive timesteps need single-step mode (multi_step false): multi-step runs all T at once."
            )
        self.adaptive, self.patience, self.tolerance = adaptive, int(patience), float(tolerance)
        self.last_steps: torch.Tensor | None = None  # steps each input of the last call ran
        if readout == "rate" and out_threshold is None:
            raise ValueError("readout 'rate' needs out_threshold (see bundle.spiking.conversion.output_threshold).")
        # with a threshold, the spiking output layer runs alongside, so readouts_at can compare both
        self.out_neuron = None if out_threshold is None else IFNeuron(float(out_threshold), v_init=0.5)
        functional.set_step_mode(self, "m" if self.multi_step else "s")
        set_kernel(self, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adaptive != "off" and not self.training and not torch.jit.is_tracing():
            return self._adaptive_forward(x)
        out = self.scores_at(x, [self.timesteps])[self.timesteps]
        if not torch.jit.is_tracing():
            self.last_steps = torch.full((x.shape[0],), self.timesteps, dtype=torch.long)
        return out

    def _adaptive_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per input: run until its class map is stable (see the module docstring), at most ``timesteps``."""
        self._reset_activity()
        functional.reset_net(self)
        batch = x.shape[0]
        steps = torch.full((batch,), self.timesteps, dtype=torch.long)
        alive = torch.arange(batch, device=x.device)  # which inputs of the call are still running
        calm = torch.zeros(batch, dtype=torch.long, device=x.device)  # consecutive stable steps so far
        membrane, rate, previous, out = 0.0, 0.0, None, None
        for t in range(1, self.timesteps + 1):
            current = self.snn(x)
            membrane = membrane + current
            if self.out_neuron is not None:
                rate = rate + self.out_neuron(current) * self.out_neuron.v_threshold
            score = membrane if self.readout == "membrane" else rate
            if out is None:
                out = score.new_empty((batch, *score.shape[1:]))
            label = score.argmax(1)
            if previous is not None:
                changed = (label != previous).flatten(1).sum(1) / label[0].numel()
                calm = torch.where(changed <= self.tolerance, calm + 1, 0)
            previous = label
            done = calm >= self.patience if t < self.timesteps else torch.ones_like(calm, dtype=torch.bool)
            if not bool(done.any()):
                continue
            out[alive[done]] = score[done] / t
            steps[alive[done].cpu()] = t
            if bool(done.all()):
                break
            keep = ~done
            alive, calm, previous, x, membrane = alive[keep], calm[keep], previous[keep], x[keep], membrane[keep]
            rate = rate[keep] if self.out_neuron is not None else rate
            self._keep_states(keep, len(keep))
        self.last_steps = steps
        return out

    def _keep_states(self, keep: torch.Tensor, batch: int) -> None:
        """Drop the finished inputs from every neuron's state (batch dimension first)."""
        for module in self.modules():
            if isinstance(module, MemoryModule):
                for name, value in module._memories.items():
                    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == batch:
                        module._memories[name] = value[keep]

    def mean_steps(self) -> float | None:
        """Mean timesteps per input of the last call (``timesteps`` unless adaptive)."""
        return None if self.last_steps is None else float(self.last_steps.float().mean())

    def _neurons(self) -> list[nn.Module]:
        return [m for m in self.snn.modules() if isinstance(m, (IFNeuron, GuardedTernaryIFNode))]

    def track_activity(self, enabled: bool = True) -> SpikingSegmenter:
        """Keep a differentiable spike count in training forwards (see :meth:`spike_rate`); off by default.

        Only the autograd (training) step counts: inference runs exactly as without it.
        """
        for module in self._neurons():
            module.track_activity = bool(enabled)
        self._tracking = bool(enabled)
        return self

    def _reset_activity(self) -> None:
        if getattr(self, "_tracking", False):
            for module in self._neurons():
                module.activity_sum, module.activity_steps = 0.0, 0

    def spike_rate(self) -> torch.Tensor | None:
        """|spikes| per neuron per timestep over all hidden neurons in the last training forward, with its
        surrogate gradient (None where nothing was counted: tracking off, or a forward without autograd)."""
        total, count = 0.0, 0
        for module in self._neurons():
            if module.activity_steps:
                total, count = total + module.activity_sum, count + module.activity_steps
        return total / count if count else None

    def scores_at(self, x: torch.Tensor, steps: Sequence[int]) -> dict[int, torch.Tensor]:
        """This readout's scores after each of ``steps`` timesteps, from one run of ``max(steps)`` steps."""
        return self.readouts_at(x, steps)[self.readout]

    def readouts_at(
        self, x: torch.Tensor, steps: Sequence[int], on_step: Callable[[int], None] | None = None
    ) -> dict[str, dict[int, torch.Tensor]]:
        """Both readouts after each of ``steps`` timesteps (``"rate"`` only when this segmenter has one).

        ``on_step(t)`` is called after each wanted step (e.g. to snapshot an activity monitor).
        """
        self._reset_activity()
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
