"""Spike activity, synaptic operations and the energy estimate of a U-Net, spiking or not.

SpikingJelly's ``op_counter.SynOpCounter`` counts a synaptic operation only where a layer's input is
exactly 0/1; after conversion a ``VoltageScaler`` makes spikes {0, s}, so it reports 0 (stack.md).
We count per layer instead, from forward hooks:

* neurons: spikes (|s| for ternary) per neuron per timestep = the firing rate;
* convolutions: the dense MACs of the layer and the fraction of its inputs that are non-zero. An input
  that is a spike train costs accumulates (ACs, "SynOps"); the analog image into the first layer costs
  MACs at every timestep.

Energy (45 nm, fp32; Horowitz 2014): MAC 4.6 pJ, AC 0.9 pJ; SNN = MACs x 4.6 + SynOps x 0.9, where a layer's
SynOps = its input firing rate x T x its dense operation count. Memory traffic, often the larger cost,
is ignored by this estimate.

One account for every model: :class:`ActivityMonitor` hooks the convolutions of whatever network runs
(the ANN, or the SNN inside a :class:`~bundle.spiking.segmenter.SpikingSegmenter`) and counts what it
computed on the very inputs it was given, e.g. the sliding windows of one volume. The ANN costs its dense
MACs x 4.6 pJ; the SNN its stem MACs and SynOps as above, over the steps each window actually ran
(adaptive T included). :meth:`ActivityMonitor.totals` also gives the ANN-equivalent energy of the same
windows (one dense pass each), so the SNN/ANN ratio compares like with like.
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import torch
from torch import nn

from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["E_AC_PJ", "E_MAC_PJ", "ActivityMonitor", "dense_macs", "energy_line"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float:
    """Dense multiply-accumulates of one conv call, per sample."""
    kernel = prod(module.kernel_size)
    if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return inp[0].numel() * module.out_channels // module.groups * kernel
    return out[0].numel() * module.in_channels // module.groups * kernel


def dense_macs(network: nn.Module, x: torch.Tensor) -> float:
    """MACs per sample of one forward pass of ``network`` (the ANN's cost) on ``x``."""
    total = [0.0]

    def hook(module, args, out):
        total[0] += _layer_macs(module, args[0], out)

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, _CONVS)]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _is_stem(name: str) -> bool:
    """The U-Net's first convolution, the one that reads the analog image."""
    return name == "stem.0.0" or name.endswith(".stem.0.0")


_NEURONS = (IFNeuron, GuardedTernaryIFNode)


class ActivityMonitor:
    """Hooks on a network that accumulate spikes and operations over calls (a context manager).

    ``network`` may be:

    * a :class:`SpikingSegmenter` (or a module holding one): windows, their shape and the steps each ran
      (``last_steps``, adaptive T included) are counted by themselves;
    * a network without spiking neurons (the ANN): every convolution costs its dense MACs, one pass per
      window, counted by themselves;
    * a bare converted SNN (every call one timestep): tell it windows and steps with :meth:`add_images`.

    :meth:`totals` gives everything counted (e.g. one volume, all its windows); :meth:`summary`
    the per-window figures.
    """

    def __init__(self, network: nn.Module):
        self.network = network
        if isinstance(network, SpikingSegmenter):
            self.segmenter = network
        else:
            self.segmenter = next((m for m in network.modules() if isinstance(m, SpikingSegmenter)), None)
        self.hooked = self.segmenter.snn if self.segmenter is not None else network
        self.spiking = any(isinstance(m, _NEURONS) for m in self.hooked.modules())
        convs = [(n, m) for n, m in self.hooked.named_modules() if isinstance(m, _CONVS)]
        self._entry = next((n for n, _ in convs if _is_stem(n)), convs[0][0] if convs else None)
        self.spikes: dict[str, float] = defaultdict(float)
        self.neurons: dict[str, int] = {}
        self.macs: dict[str, float] = defaultdict(float)
        self.synops: dict[str, float] = defaultdict(float)
        self.dense: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.windows = 0  # inputs (sliding windows, images) the network was called on
        self.window_steps = 0  # summed over windows: the timesteps each ran (1 per window for the ANN)
        self.passes = 0  # inputs through the first convolution: windows x steps, as computed
        self.shapes: dict[tuple, int] = {}  # spatial shape of the windows -> how many
        self.timesteps = 0  # the last T told to add_images
        self._handles: list = []

    @property
    def images(self) -> int:
        return self.windows

    def __enter__(self):
        for name, m in self.hooked.named_modules():
            if isinstance(m, _NEURONS):
                self._handles.append(m.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(m, _CONVS):
                analog = m.in_channels if (_is_stem(name) or not self.spiking) else 0
                self._handles.append(m.register_forward_hook(self._conv_hook(name, analog, name == self._entry)))
        if self.segmenter is not None:
            self._handles.append(self.segmenter.register_forward_pre_hook(self._window_hook))
            self._handles.append(self.segmenter.register_forward_hook(self._steps_hook))
        elif not self.spiking:
            self._handles.append(self.network.register_forward_pre_hook(self._window_hook))
            self._handles.append(self.network.register_forward_hook(self._ann_steps_hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def add_images(self, n: int, timesteps: int) -> None:
        """Record that ``n`` images were each run for ``timesteps`` steps since the last call (a bare SNN only:
        a segmenter or an ANN is counted by itself)."""
        self.windows += n
        self.window_steps += n * timesteps
        self.timesteps = timesteps

    def _window_hook(self, module, args):
        x = args[0]
        self.windows += x.shape[0]
        shape = tuple(int(s) for s in x.shape[2:])
        self.shapes[shape] = self.shapes.get(shape, 0) + x.shape[0]

    def _steps_hook(self, module, args, out):
        steps = module.last_steps
        self.window_steps += int(steps.sum()) if steps is not None else args[0].shape[0] * module.timesteps
        self.timesteps = module.timesteps

    def _ann_steps_hook(self, module, args, out):
        self.window_steps += args[0].shape[0]

    def _neuron_hook(self, name):
        def hook(module, args, out):
            spikes = out.detach()
            self.spikes[name] += float(spikes.abs().sum())  # spikes are -1/0/1: the count (count_nonzero is 10x slower)
            self.neurons[name] = spikes[0].numel() if module.step_mode == "s" else spikes[0, 0].numel()

        return hook

    def _conv_hook(self, name, analog, entry):
        def hook(module, args, out):
            x = args[0].detach()
            per_call = _layer_macs(module, x, out) * x.shape[0]  # all samples of this call
            self.dense[name] += per_call
            self.calls[name] += 1
            channel = x.dim() - len(module.kernel_size) - 1  # 1, or 2 in multi-step mode ([T, B, C, ...])
            if entry:
                self.passes += x.shape[0] * (x.shape[1] if channel == 2 else 1)
            if analog == module.in_channels and not self.spiking:  # the ANN: every input is analog, dense MACs
                self.macs[name] += per_call
                return
            dims = [d for d in range(x.dim()) if d != channel]
            # per input channel; sign().abs() counts non-zeros several times faster than count_nonzero on a CPU
            active = x.sign().abs_().sum(dim=dims, dtype=torch.float32) / (x.numel() // x.shape[channel])
            a = analog / module.in_channels
            self.macs[name] += per_call * a * float(active[:analog].mean()) if analog else 0.0
            if analog < module.in_channels:
                self.synops[name] += per_call * (1 - a) * float(active[analog:].mean())

        return hook

    def firing_rates(self) -> dict[str, float]:
        """Spikes per neuron per timestep, per neuron layer (ternary: |spikes|)."""
        steps = max(self.window_steps, 1)
        return {k: self.spikes[k] / (self.neurons[k] * steps) for k in self.spikes}

    def _mean_firing_rate(self) -> float:
        neurons = sum(self.neurons.values())
        return sum(self.spikes.values()) / max(neurons * max(self.window_steps, 1), 1)

    def summary(self, ann_macs: float | None = None) -> dict[str, float]:
        """Per-image (per-window) means: MACs, SynOps, energy (uJ) and, given the ANN's MACs, its energy."""
        n = max(self.windows, 1)
        macs, synops = sum(self.macs.values()) / n, sum(self.synops.values()) / n
        out = {
            "timesteps": self.window_steps / n if self.windows else self.timesteps,
            "mean_firing_rate": self._mean_firing_rate(),
            "macs": macs,
            "synops": synops,
            "energy_uj": (macs * E_MAC_PJ + synops * E_AC_PJ) * 1e-6,
        }
        if ann_macs is not None:
            out["ann_macs"] = ann_macs
            out["ann_energy_uj"] = ann_macs * E_MAC_PJ * 1e-6
        return out

    def totals(self) -> dict[str, float | int | str]:
        """Everything counted (e.g. one volume, all its windows), the same way for every model.

        ``windows`` and ``window`` (their spatial shape, ``"48x64x48"``) say what was computed on;
        ``energy_uj`` = MACs x 4.6 pJ + SynOps x 0.9 pJ of what the network computed; ``ann_macs`` /
        ``ann_energy_uj``: one dense pass per window (the ANN's cost on these windows, its own ``energy_uj``
        for the ANN); ``energy_vs_ann`` = ``energy_uj / ann_energy_uj``. SNNs add ``mean_timesteps``
        (steps per window actually run) and ``mean_firing_rate``.
        """
        macs, synops = sum(self.macs.values()), sum(self.synops.values())
        dense_per_pass = sum(self.dense.values()) / self.passes if self.passes else 0.0
        ann_macs = dense_per_pass * self.windows
        energy = (macs * E_MAC_PJ + synops * E_AC_PJ) * 1e-6
        ann_energy = ann_macs * E_MAC_PJ * 1e-6
        out: dict[str, float | int | str] = {
            "windows": self.windows,
            "window": "; ".join("x".join(map(str, s)) for s in self.shapes) if self.shapes else "",
        }
        if self.spiking:
            out["mean_timesteps"] = self.window_steps / self.windows if self.windows else 0.0
            out["mean_firing_rate"] = self._mean_firing_rate()
        out.update(
            macs=macs,
            synops=synops,
            energy_uj=energy,
            ann_macs=ann_macs,
            ann_energy_uj=ann_energy,
            energy_vs_ann=energy / ann_energy if ann_energy else float("nan"),
        )
        return out


def energy_line(totals: dict) -> str:
    """One line for logs: energy, the ANN's on the same input, and that input."""
    if not totals.get("windows"):
        return "energy: nothing counted"
    window = totals.get("window") or "?"
    steps = f", mean T {totals['mean_timesteps']:.2f}" if "mean_timesteps" in totals else ""
    return (
        f"energy {totals['energy_uj']:.0f} uJ ({totals['macs'] / 1e9:.2f} GMAC, {totals['synops'] / 1e9:.2f} GSynOp{steps}); "
        f"ANN on the same input {totals['ann_energy_uj']:.0f} uJ ({totals['ann_macs'] / 1e9:.2f} GMAC): "
        f"ratio {totals['energy_vs_ann']:.3f}; input {totals['windows']} window(s) of {window}"
    )
