"""Spike activity, synaptic operations and the energy of a U-Net, spiking or not, in two accounts.

SpikingJelly's ``op_counter.SynOpCounter`` counts a synaptic operation only where a layer's input is
exactly 0/1; after conversion a ``VoltageScaler`` makes spikes {0, s}, so it reports 0 (stack.md).
We count per layer instead, from forward hooks:

* neurons: spikes (|s| for ternary) per neuron per timestep = the firing rate;
* convolutions: the dense MACs of the layer and the fraction of its inputs that are non-zero. An input
  that is a spike train costs accumulates (ACs, "SynOps"); the analog image into the first layer costs
  MACs at every timestep; and what each layer moves: its weights, the elements it reads and writes, the
  spikes it receives and the spikes its neurons send on.

Two accounts come from these counts (:mod:`bundle.spiking.energy`, where every constant is, with its source):
the usual compute-only one (45 nm: MAC 4.6 pJ, AC 0.9 pJ; an INT8 network's MAC 0.3 pJ), ``energy_uj``; and
compute plus memory traffic (weights, membrane potentials read and written every step, spikes as address
events, feature maps) with SRAM or DRAM costs per bit, ``energy_sram_uj`` and ``energy_dram_uj``.

One account for every model: :class:`ActivityMonitor` hooks the convolutions of whatever network runs
(the ANN, its INT8 version, or the SNN inside a :class:`~bundle.spiking.segmenter.SpikingSegmenter`) and
counts what it computed on the very inputs it was given, e.g. the sliding windows of one volume, over the
steps each window actually ran (adaptive T included). :meth:`ActivityMonitor.totals` also gives the FP32
ANN's and the INT8 ANN's energy on the same windows (one dense pass each), in every account, so each ratio
compares like with like.
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import torch
from torch import nn
from torch.ao.nn import quantized as nnq

from bundle.spiking.energy import E_AC_FP32, E_MAC_FP32, LayerCounts, accounts
from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["E_AC_PJ", "E_MAC_PJ", "ActivityMonitor", "dense_macs", "energy_line"]

E_MAC_PJ = E_MAC_FP32  # the compute-only account's constants (bundle.spiking.energy has them all)
E_AC_PJ = E_AC_FP32
_QUANTIZED = (nnq.Conv2d, nnq.Conv3d, nnq.ConvTranspose2d, nnq.ConvTranspose3d)  # an INT8 network's (FX PTQ)
_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, *_QUANTIZED)


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float:
    """Dense multiply-accumulates of one conv call, per sample."""
    kernel = prod(module.kernel_size)
    if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d, nnq.ConvTranspose2d, nnq.ConvTranspose3d)):
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


def _weights(module: nn.Module) -> int:
    """Parameters of a convolution's kernel (a quantized one keeps them behind ``weight()``)."""
    weight = module.weight
    return (weight() if callable(weight) else weight).numel()


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
        self.precision = "fp32"
        if any(isinstance(m, _QUANTIZED) for m in self.hooked.modules()):  # bundle.networks.quantized sets weight_bits
            self.precision = "int8w4" if getattr(self.hooked, "weight_bits", 8) <= 4 else "int8"
        convs = [(n, m) for n, m in self.hooked.named_modules() if isinstance(m, _CONVS)]
        self._entry = next((n for n, _ in convs if _is_stem(n)), convs[0][0] if convs else None)
        self.spikes: dict[str, float] = defaultdict(float)
        self.neurons: dict[str, int] = {}
        self.macs: dict[str, float] = defaultdict(float)
        self.synops: dict[str, float] = defaultdict(float)
        self.dense: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.samples: dict[str, int] = defaultdict(int)  # inputs through each convolution: windows (x steps)
        self.inputs: dict[str, float] = defaultdict(float)  # elements read, all samples
        self.outputs: dict[str, float] = defaultdict(float)  # elements written, all samples
        self.events: dict[str, float] = defaultdict(float)  # non-zero (spike) inputs of spiking layers
        self.kernels: dict[str, int] = {}  # weights per convolution
        self.sizes: dict[str, tuple[int, int]] = {}  # (input, output) elements per sample
        self.analog: dict[str, bool] = {}  # whether a convolution's inputs are analog values (not spikes)
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
            samples = x.shape[0] * (x.shape[1] if channel == 2 else 1)
            if entry:
                self.passes += samples
            self.samples[name] += samples
            self.inputs[name] += x.numel()
            self.outputs[name] += out.numel()
            if name not in self.kernels:
                self.kernels[name] = _weights(module)
                self.sizes[name] = (x.numel() // samples, out.numel() // samples)
                self.analog[name] = analog == module.in_channels
            if analog == module.in_channels and not self.spiking:  # the ANN: every input is analog, dense MACs
                self.macs[name] += per_call
                return
            dims = [d for d in range(x.dim()) if d != channel]
            # per input channel; sign().abs() counts non-zeros several times faster than count_nonzero on a CPU
            nonzero = x.sign().abs_().sum(dim=dims, dtype=torch.float32)
            active = nonzero / (x.numel() // x.shape[channel])
            a = analog / module.in_channels
            self.macs[name] += per_call * a * float(active[:analog].mean()) if analog else 0.0
            if analog < module.in_channels:
                self.synops[name] += per_call * (1 - a) * float(active[analog:].mean())
                self.events[name] += float(nonzero[analog:].sum())

        return hook

    def layer_counts(self) -> list[LayerCounts]:
        """What each convolution computed and moved (for :mod:`bundle.spiking.energy`); a neuron layer's spikes go
        to the convolution that feeds it (``a.b.0`` -> ``a.b.spiking_0.if_node``, the converter's names)."""
        layers = {
            name: LayerCounts(
                name, self.kernels[name], self.samples[name], self.dense[name], self.macs[name], self.synops[name],
                self.inputs[name], self.outputs[name], self.events[name], self.spiking and not self.analog[name],
                0.0, *self.sizes[name],
            )
            for name in self.kernels
        }  # fmt: skip
        parents = {name.rpartition(".")[0]: name for name in layers}
        for neuron, spikes in self.spikes.items():
            conv = parents.get(neuron.split(".spiking_")[0])
            if conv is None:  # a neuron layer not right after a convolution: its spikes still travel
                layers[neuron] = LayerCounts(neuron, output_size=self.neurons[neuron])
                conv = neuron
            layers[conv].events_out += spikes
        return list(layers.values())

    def accounts(self) -> dict[str, float]:
        """Both energy accounts of everything counted, and the FP32 and INT8 ANN's on the same windows
        (:func:`bundle.spiking.energy.accounts`)."""
        return accounts(self.layer_counts(), self.windows, self.spiking, self.precision)

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
            "energy_uj": self.accounts()["energy_uj"] / n,
        }
        if ann_macs is not None:
            out["ann_macs"] = ann_macs
            out["ann_energy_uj"] = ann_macs * E_MAC_PJ * 1e-6
        return out

    def totals(self) -> dict[str, float | int | str]:
        """Everything counted (e.g. one volume, all its windows), the same way for every model.

        ``windows`` and ``window`` (their spatial shape, ``"48x64x48"``) say what was computed on;
        ``energy_uj`` = MACs x 4.6 pJ + SynOps x 0.9 pJ of what the network computed (an INT8 network: MACs x
        0.3 pJ); ``ann_macs`` / ``ann_energy_uj``: one dense FP32 pass per window (the ANN's cost on these
        windows, its own ``energy_uj`` for the ANN); ``energy_vs_ann`` = ``energy_uj / ann_energy_uj``.
        The memory-traffic account: ``energy_sram_uj``, ``energy_dram_uj``, with the FP32 ANN's (``ann_energy_sram_uj``,
        ...) and the INT8 ANN's (``int8_energy_uj``, ``int8_energy_sram_uj``, ``int8_energy_dram_uj``) on the same
        windows, and ``traffic_mbit``. SNNs add ``mean_timesteps`` (steps per window actually run),
        ``mean_firing_rate`` and ``spikes_per_neuron`` (per window: rate x steps).
        """
        macs, synops = sum(self.macs.values()), sum(self.synops.values())
        dense_per_pass = sum(self.dense.values()) / self.passes if self.passes else 0.0
        ann_macs = dense_per_pass * self.windows
        energy = self.accounts()
        out: dict[str, float | int | str] = {
            "windows": self.windows,
            "window": "; ".join("x".join(map(str, s)) for s in self.shapes) if self.shapes else "",
        }
        if self.spiking:
            out["mean_timesteps"] = self.window_steps / self.windows if self.windows else 0.0
            out["mean_firing_rate"] = self._mean_firing_rate()
            out["spikes_per_neuron"] = out["mean_firing_rate"] * out["mean_timesteps"]
        out.update(macs=macs, synops=synops, ann_macs=ann_macs, **energy)
        ann = energy["ann_energy_uj"]
        out["energy_vs_ann"] = energy["energy_uj"] / ann if ann else float("nan")
        return out


def energy_line(totals: dict) -> str:
    """One line for logs: energy in both accounts, the ANN's on the same input, and that input."""
    if not totals.get("windows"):
        return "energy: nothing counted"
    window = totals.get("window") or "?"
    steps = f", mean T {totals['mean_timesteps']:.2f}" if "mean_timesteps" in totals else ""
    memory = ""
    if "energy_dram_uj" in totals:
        memory = (
            f"; with memory traffic SRAM {totals['energy_sram_uj']:.0f} / DRAM {totals['energy_dram_uj']:.0f} uJ "
            f"(INT8 ANN {totals['int8_energy_sram_uj']:.0f} / {totals['int8_energy_dram_uj']:.0f} uJ)"
        )
    return (
        f"energy {totals['energy_uj']:.0f} uJ ({totals['macs'] / 1e9:.2f} GMAC, {totals['synops'] / 1e9:.2f} GSynOp{steps}); "
        f"ANN on the same input {totals['ann_energy_uj']:.0f} uJ ({totals['ann_macs'] / 1e9:.2f} GMAC): "
        f"ratio {totals['energy_vs_ann']:.3f}{memory}; input {totals['windows']} window(s) of {window}"
    )
