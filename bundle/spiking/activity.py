"""Spike activity, synaptic operations and the energy estimate of a converted U-Net.

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
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import torch
from torch import nn

from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron

__all__ = ["E_AC_PJ", "E_MAC_PJ", "ActivityMonitor", "dense_macs"]

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


def _analog_channels(name: str, module: nn.Module) -> int:
    """How many input channels of a U-Net conv carry analog values: the image's, into the first layer."""
    return module.in_channels if name == "stem.0.0" else 0


class ActivityMonitor:
    """Hooks on a converted U-Net that accumulate spikes and operations over calls.

    Use as a context manager around SNN inference; every call of the SNN is one timestep of the
    samples in the batch. ``steps`` must be told the number of timesteps per image via :meth:`add_images`.
    """

    def __init__(self, snn: nn.Module):
        self.snn = snn
        self.spikes: dict[str, float] = defaultdict(float)
        self.neurons: dict[str, int] = {}
        self.macs: dict[str, float] = defaultdict(float)
        self.synops: dict[str, float] = defaultdict(float)
        self.dense: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.images = 0
        self.timesteps = 0
        self._handles: list = []

    def __enter__(self):
        for name, m in self.snn.named_modules():
            if isinstance(m, (IFNeuron, GuardedTernaryIFNode)):
                self._handles.append(m.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(m, _CONVS):
                self._handles.append(m.register_forward_hook(self._conv_hook(name, _analog_channels(name, m))))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def add_images(self, n: int, timesteps: int) -> None:
        """Record that ``n`` images were each run for ``timesteps`` steps since the last call."""
        self.images += n
        self.timesteps = timesteps

    def _neuron_hook(self, name):
        def hook(module, args, out):
            spikes = out.detach()
            self.spikes[name] += float(spikes.abs().sum())  # spikes are -1/0/1: the count (count_nonzero is 10x slower)
            self.neurons[name] = spikes[0].numel() if module.step_mode == "s" else spikes[0, 0].numel()

        return hook

    def _conv_hook(self, name, analog):
        def hook(module, args, out):
            x = args[0].detach()
            per_call = _layer_macs(module, x, out) * x.shape[0]  # all samples of this call
            dims = [d for d in range(x.dim()) if d != 1]
            # per input channel; sign().abs() counts non-zeros several times faster than count_nonzero on a CPU
            active = x.sign().abs_().sum(dim=dims, dtype=torch.float32) / (x.numel() // x.shape[1])
            a = analog / module.in_channels
            self.dense[name] += per_call
            self.macs[name] += per_call * a * float(active[:analog].mean()) if analog else 0.0
            if analog < module.in_channels:
                self.synops[name] += per_call * (1 - a) * float(active[analog:].mean())
            self.calls[name] += 1

        return hook

    def firing_rates(self) -> dict[str, float]:
        """Spikes per neuron per timestep, per neuron layer (ternary: |spikes|)."""
        steps = max(self.images * self.timesteps, 1)
        return {k: self.spikes[k] / (self.neurons[k] * steps) for k in self.spikes}

    def summary(self, ann_macs: float | None = None) -> dict[str, float]:
        """Per-image totals: MACs, SynOps, energy (uJ) and, given the ANN's MACs, its energy."""
        n = max(self.images, 1)
        macs, synops = sum(self.macs.values()) / n, sum(self.synops.values()) / n
        neurons = sum(self.neurons.values())
        out = {
            "timesteps": self.timesteps,
            "mean_firing_rate": sum(self.spikes.values()) / max(neurons * n * max(self.timesteps, 1), 1),
            "macs": macs,
            "synops": synops,
            "energy_uj": (macs * E_MAC_PJ + synops * E_AC_PJ) * 1e-6,
        }
        if ann_macs is not None:
            out["ann_macs"] = ann_macs
            out["ann_energy_uj"] = ann_macs * E_MAC_PJ * 1e-6
        return out
