"""NeuroBench (``pip install -e ".[neuromorphic]"``) for the bundle's networks: the FP32 ANN, the INT8 ANN and the
SNNs, each measured by NeuroBench's own metrics (footprint, connection sparsity, activation sparsity, synaptic
operations: dense, effective MACs, effective ACs) on the same windows.

NeuroBench 2.3 hooks ``nn.Linear``/``nn.Conv1-3d`` and ``nn.ReLU``/``nn.Sigmoid``/snnTorch neurons, and counts a
layer's operations as accumulates only where its input is exactly -1/0/1. Our networks need four small
adapters, each a hook NeuroBench's metrics then read as their own:

* SpikingJelly neurons (:class:`~bundle.spiking.neurons.IFNeuron`, :class:`~bundle.spiking.neurons.GuardedTernaryIFNode`)
  are registered as activation layers (NeuroBench's ``NeuronHook``: their outputs are the spikes);
* the converter feeds each spiking layer ``VoltageScaler(s)(spikes)``, values {0, +-s}: the hook records the
  spikes themselves, ``sign(x)`` (the scale belongs to the weights);
* transposed convolutions are counted as the 1x1 convolution with ``out x prod(kernel)`` outputs that performs the
  same products (exact: every input element meets every weight of its channel once);
* the INT8 network's quantized convolutions are counted as float convolutions holding their dequantized INT8
  weights, on dequantized inputs (same zeros, same operations); its footprint is its state dict's bytes
  (NeuroBench's ``Footprint`` reads parameters and buffers, where packed INT8 weights are neither).

:func:`neurobench_metrics` runs ``neurobench.benchmarks.Benchmark`` on a list of windows and returns its results.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nniq

from bundle.spiking.activity import _is_stem
from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["bundle_model", "neurobench_metrics"]

_NEURONS = (IFNeuron, GuardedTernaryIFNode)
_TRANSPOSED = (nn.ConvTranspose2d, nn.ConvTranspose3d, nnq.ConvTranspose2d, nnq.ConvTranspose3d)
_QUANTIZED = (nnq.Conv2d, nnq.Conv3d, nnq.ConvTranspose2d, nnq.ConvTranspose3d)
_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, *_QUANTIZED)


def _float_weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    weight = weight() if callable(weight) else weight
    return (weight.dequantize() if weight.is_quantized else weight).detach().float()


def _counting_layer(module: nn.Module) -> nn.Module:
    """The float ``nn.ConvNd`` NeuroBench counts in place of ``module`` (the module itself where it can)."""
    if not isinstance(module, (*_TRANSPOSED, *_QUANTIZED)):
        return module
    weight = _float_weight(module)
    dims = weight.dim() - 2
    conv = (nn.Conv2d, nn.Conv3d)[dims - 2]
    if isinstance(module, _TRANSPOSED):  # [in, out, *k] -> [out * prod(k), in, 1, ...]
        proxy = conv(module.in_channels, module.out_channels * prod(module.kernel_size), 1, bias=False)
        weight = weight.movedim(0, -1).reshape(-1, module.in_channels, *([1] * dims))
    else:
        proxy = conv(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                     module.dilation, module.groups, bias=False)  # fmt: skip
    proxy.weight.data = weight
    return proxy


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.dequantize() if x.is_quantized else x


def _hook_classes():
    """NeuroBench's hook classes, extended (imported here: ``neurobench`` is an optional extra)."""
    from neurobench.hooks.layer import LayerHook
    from neurobench.hooks.neuron import NeuronHook

    class CountedLayerHook(LayerHook):
        """Records a layer's input as NeuroBench should see it; ``layer`` is what NeuroBench counts."""

        def __init__(self, module: nn.Module, spikes: bool):
            self.module, self.spikes = module, spikes
            super().__init__(module)
            self.layer = _counting_layer(module)

        def hook_fn(self, module, inputs):
            x = _plain(inputs[0].detach())
            self.inputs.append((x.sign() if self.spikes else x,))

        def register_hook(self):
            self.hook = self.module.register_forward_pre_hook(self.hook_fn)

    class OutputHook(NeuronHook):
        """An activation layer's outputs (spikes, ReLU or INT8 ConvReLU outputs) as plain float tensors."""

        def hook_fn(self, layer, inputs, output):
            self.activation_outputs.append(_plain(output.detach()))

    return CountedLayerHook, OutputHook


def bundle_model(network: nn.Module):
    """``network`` (ANN, INT8 ANN or :class:`SpikingSegmenter`) as a ``neurobench.models.NeuroBenchModel`` whose
    ``__net__`` is its connection layers as NeuroBench counts them."""
    from neurobench.models.neurobench_model import NeuroBenchModel

    CountedLayerHook, OutputHook = _hook_classes()

    class _Model(NeuroBenchModel):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net.eval()
            seg = net if isinstance(net, SpikingSegmenter) else None
            self.hooked = seg.snn if seg is not None else net
            self.spiking = any(isinstance(m, _NEURONS) for m in self.hooked.modules())
            self.quantized = any(isinstance(m, _QUANTIZED) for m in self.hooked.modules())
            convs = [(n, m) for n, m in self.hooked.named_modules() if isinstance(m, _CONVS)]
            self.convs = convs
            # the static view: every connection layer as NeuroBench counts it (connection sparsity)
            self.view = nn.ModuleList(_counting_layer(m) for _, m in convs)

        def __call__(self, batch):
            with torch.no_grad():
                return self.net(batch)

        def __net__(self):
            return self.view

        def register_hooks(self):
            for name, module in self.convs:
                self.connection_hooks.append(CountedLayerHook(module, self.spiking and not _is_stem(name)))
            acts = _NEURONS if self.spiking else (nn.ReLU, nniq.ConvReLU2d, nniq.ConvReLU3d)
            for name, module in self.hooked.named_modules():
                if isinstance(module, acts):
                    self.activation_hooks.append(OutputHook(module, name))

    return _Model(network)


def neurobench_metrics(network: nn.Module, windows: Sequence[torch.Tensor]) -> dict:
    """NeuroBench's metrics of ``network`` on ``windows`` (each ``[1, 1, *spatial]``), per window.

    Returns ``footprint_bytes``, ``parameters``, ``connection_sparsity``, ``activation_sparsity``,
    ``synops_dense``, ``synops_effective_macs``, ``synops_effective_acs`` (NeuroBench's ``SynapticOperations``:
    ``Dense``, ``Effective_MACs``, ``Effective_ACs``) and ``windows``.
    """
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel

    model = bundle_model(network)
    data = _Loader((w, torch.zeros(w.shape[0])) for w in windows)
    bench = Benchmark(model, data, [], [], [[ConnectionSparsity], [ActivationSparsity, SynapticOperations]])
    results = bench.run(quiet=True)
    model.cleanup_hooks()
    ops = results["SynapticOperations"]
    whole = TorchModel(network)  # footprint and parameters of the network as it runs (BatchNorm included)
    out = {
        "footprint_bytes": int(Footprint()(whole)),
        "parameters": int(ParameterCount()(whole)),
        "connection_sparsity": float(results["ConnectionSparsity"]),
        "activation_sparsity": float(results["ActivationSparsity"]),
        "synops_dense": float(ops["Dense"]),
        "synops_effective_macs": float(ops["Effective_MACs"]),
        "synops_effective_acs": float(ops["Effective_ACs"]),
        "windows": len(windows),
    }
    if model.quantized:  # packed INT8 weights are neither parameters nor buffers: count the state dict
        state = network.state_dict()
        out["footprint_bytes"] = sum(t.numel() * t.element_size() for t in state.values() if torch.is_tensor(t))
        out["parameters"] = sum(m.weight().numel() + m.bias().numel() for _, m in model.convs)
    return out


class _Loader(list):
    """A list of ``(window, target)`` batches with the ``dataset`` length NeuroBench's ``Benchmark.run`` reads."""

    @property
    def dataset(self):
        return self
