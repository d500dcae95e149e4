"""Energy per inference, two accounts from one set of counts: compute only, and compute plus memory traffic.

Every constant is here, with its source (45 nm CMOS, as the field's estimates use):

* ``E_MAC_FP32`` 4.6 pJ = fp32 multiply 3.7 + fp32 add 0.9; ``E_AC_FP32`` 0.9 pJ = fp32 add
  (M. Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1.9);
* ``E_MAC_INT8`` 0.3 pJ = 8-bit multiply 0.2 + 32-bit integer add 0.1 (ibid.; an INT8 MAC accumulates
  into 32 bits, as fbgemm and INT8 accelerators do);
* ``E_SRAM_BIT`` 10 pJ per 64-bit read of an 8 KB SRAM bank (ibid.) = 0.156 pJ/bit; the same 5 pJ per
  32-bit word as S. Han et al., "EIE", ISCA 2016, Table I;
* ``E_DRAM_BIT`` 640 pJ per 32-bit DRAM access = 20 pJ/bit (Han et al. 2016, Table I, from Horowitz 2014:
  1.3-2.6 nJ per 64 bits).

The compute-only account is the usual one (:mod:`bundle.spiking.activity`): ANN = MACs x ``E_MAC``;
SNN = analog MACs (the image into the first layer, every step) x ``E_MAC_FP32`` + synaptic operations x
``E_AC_FP32``.

The memory-traffic account adds what moves between memory and the arithmetic, in the spirit of
Dampfhoffer et al. (IEEE TETCI 2023), with these assumptions (one line each):

* every layer runs over the whole window before the next (layer by layer; an SNN step by step);
* weights are fetched once per layer per window (ANN) and once per layer per window per step (SNN: the
  step-by-step schedule our SNN runs; weight-stationary over T would need T spike maps stored);
* the ANN reads each layer's input feature map once and writes its output once (32 bits FP32, 8 bits INT8;
  weights 32, 8, or 4 bits for the INT8 network with 4-bit weights, ``int8w4``);
* an SNN neuron's membrane potential (``MEMBRANE_BITS`` = 32, the float32 state the bundle keeps) is read and
  written once per step, whether it fires or not (time-stepped update: integrate, compare, reset); the
  readout layer's accumulator likewise; synaptic accumulation itself is in the AC's energy;
* spikes travel as address events: each spike is written once by its neuron layer and read once by every
  layer that consumes it, ``ceil(log2(neurons of that map)) + 1`` bits each (address and sign);
* the analog image into the first layer is read at every step (FP32);
* SRAM variant: every access at ``E_SRAM_BIT`` (everything on chip, optimistic for both networks); DRAM
  variant: every access at ``E_DRAM_BIT`` (nothing fits on chip). Biases, control and leakage are left out.

The baselines of an account are the same windows' dense passes: the FP32 ANN (``ann_*``) and the INT8 ANN
(``int8_*``), each in all three accounts, so every ratio compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2

__all__ = [
    "ACT_BITS",
    "E_AC_FP32",
    "E_DRAM_BIT",
    "E_MAC",
    "E_MAC_FP32",
    "E_MAC_INT8",
    "E_SRAM_BIT",
    "MEMBRANE_BITS",
    "MEMORIES",
    "WEIGHT_BITS",
    "LayerCounts",
    "accounts",
    "event_bits",
    "layer_accounts",
]

E_MAC_FP32 = 4.6  # pJ, fp32 multiply-accumulate (Horowitz 2014)
E_AC_FP32 = 0.9  # pJ, fp32 accumulate (Horowitz 2014)
E_MAC_INT8 = 0.3  # pJ, 8-bit multiply + 32-bit accumulate (Horowitz 2014)
E_SRAM_BIT = 10.0 / 64  # pJ per bit, 8 KB SRAM (Horowitz 2014; Han et al. 2016: 5 pJ / 32 bits)
E_DRAM_BIT = 640.0 / 32  # pJ per bit, DRAM (Han et al. 2016, from Horowitz 2014)
MEMBRANE_BITS = 32  # the SNN's float32 membrane potential
# by precision: pJ per MAC, bits per weight, bits per activation ("int8w4": 4-bit weights, 8-bit activations, its MAC
# counted as an INT8 MAC: no 4x8-bit figure in the source)
E_MAC = {"fp32": E_MAC_FP32, "int8": E_MAC_INT8, "int8w4": E_MAC_INT8}
WEIGHT_BITS = {"fp32": 32, "int8": 8, "int8w4": 4}
ACT_BITS = {"fp32": 32, "int8": 8, "int8w4": 8}
MEMORIES = {"sram": E_SRAM_BIT, "dram": E_DRAM_BIT}  # pJ per bit by memory variant


@dataclass
class LayerCounts:
    """What one convolution computed and moved, summed over every call (windows x steps).

    ``samples``: inputs it processed (windows for an ANN, windows x steps for an SNN); ``weights``: its kernel's
    parameter count; ``dense``: dense MACs; ``macs``: MACs on analog inputs; ``synops``: accumulates on spike
    inputs; ``inputs``/``outputs``: elements read and written; ``events``: non-zero inputs (spikes);
    ``spiking``: its inputs are spikes; ``events_out``: spikes its following neuron layer emitted;
    ``input_size``/``output_size``: elements per sample (for address widths).
    """

    name: str
    weights: int = 0
    samples: int = 0
    dense: float = 0.0
    macs: float = 0.0
    synops: float = 0.0
    inputs: float = 0.0
    outputs: float = 0.0
    events: float = 0.0
    spiking: bool = False
    events_out: float = 0.0
    input_size: int = 0
    output_size: int = 0


def event_bits(elements: int) -> int:
    """Bits of one address event into a map of ``elements`` neurons: its address and a sign bit."""
    return ceil(log2(max(int(elements), 2))) + 1


def _dense_bits(layer: LayerCounts, windows: int, precision: str) -> tuple[float, float]:
    """(weight bits, feature-map bits) of ``windows`` dense passes of ``layer`` in ``precision``."""
    per = max(layer.samples, 1)
    maps = (layer.inputs + layer.outputs) / per * windows * ACT_BITS[precision]
    return layer.weights * windows * WEIGHT_BITS[precision], maps


def _snn_bits(layer: LayerCounts) -> tuple[float, float]:
    """(rate-independent bits, rate-dependent bits) of ``layer`` in an SNN, over everything it computed."""
    fixed = layer.weights * layer.samples * WEIGHT_BITS["fp32"] + 2 * layer.outputs * MEMBRANE_BITS
    if not layer.spiking:
        fixed += layer.inputs * ACT_BITS["fp32"]  # the analog image, read every step
    rated = layer.events * event_bits(layer.input_size) + layer.events_out * event_bits(layer.output_size)
    return fixed, rated


def layer_accounts(layers: list[LayerCounts], windows: int, snn: bool, precision: str = "fp32") -> list[dict]:
    """Per layer, in pJ: the model's compute (``compute``), its memory traffic split into the part that does not
    depend on firing (``fixed_bits``) and the part that does (``rated_bits``, SNN only), and the FP32 and INT8
    ANN's compute and traffic bits on the same ``windows``. :func:`accounts` sums these."""
    out = []
    for layer in layers:
        ann32_w, ann32_a = _dense_bits(layer, windows, "fp32")
        int8_w, int8_a = _dense_bits(layer, windows, "int8")
        dense = layer.dense / max(layer.samples, 1) * windows
        if snn:
            compute = layer.macs * E_MAC_FP32 + layer.synops * E_AC_FP32
            fixed, rated = _snn_bits(layer)
            rate_compute = layer.synops * E_AC_FP32
        else:
            compute = layer.macs * E_MAC[precision]
            w, a = _dense_bits(layer, layer.samples, precision)
            fixed, rated, rate_compute = w + a, 0.0, 0.0
        out.append({
            "name": layer.name, "spiking": layer.spiking, "compute": compute, "rate_compute": rate_compute,
            "fixed_bits": fixed, "rated_bits": rated,
            "input_rate": layer.events / layer.inputs if layer.spiking and layer.inputs else None,
            "ann_compute": dense * E_MAC_FP32, "ann_bits": ann32_w + ann32_a,
            "int8_compute": dense * E_MAC_INT8, "int8_bits": int8_w + int8_a,
        })  # fmt: skip
    return out


def accounts(layers: list[LayerCounts], windows: int, snn: bool, precision: str = "fp32") -> dict[str, float]:
    """Both accounts, in uJ, of what ``layers`` computed on ``windows`` windows, and the FP32 and INT8 ANN's on
    the same windows.

    Keys: ``energy_uj`` (compute only), ``energy_sram_uj`` and ``energy_dram_uj`` (compute + memory traffic),
    ``traffic_mbit``; the same three for the FP32 ANN (``ann_energy_uj``, ``ann_energy_sram_uj``,
    ``ann_energy_dram_uj``) and for the INT8 ANN (``int8_...``). ``snn``: the layers are a spiking network's
    (fp32 weights and membranes); else a dense network in ``precision`` (``"fp32"``, ``"int8"`` or ``"int8w4"``).
    """
    per_layer = layer_accounts(layers, windows, snn, precision)

    def total(key: str) -> float:
        return sum(layer[key] for layer in per_layer)

    own_bits = total("fixed_bits") + total("rated_bits")
    out = {"energy_uj": total("compute") * 1e-6, "traffic_mbit": own_bits * 1e-6}
    for memory, e_bit in MEMORIES.items():
        out[f"energy_{memory}_uj"] = (total("compute") + own_bits * e_bit) * 1e-6
    for prefix in ("ann", "int8"):
        out[f"{prefix}_energy_uj"] = total(f"{prefix}_compute") * 1e-6
        for memory, e_bit in MEMORIES.items():
            out[f"{prefix}_energy_{memory}_uj"] = (total(f"{prefix}_compute") + total(f"{prefix}_bits") * e_bit) * 1e-6
    return out
