"""Neurons: rates against ReLU on constant inputs, overshoot correction, reset, surrogate gradients."""

import pytest
import torch

from bundle.spiking import kernels
from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron, make_neuron, set_kernel

X = torch.linspace(-1.0, 1.0, 41)


def _rate(neuron, x, steps):
    return torch.stack([neuron(x) for _ in range(steps)]).mean(0)


@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("v_init", [0.0, 0.5])
def test_rate_approximates_relu_on_constant_input(kind, v_init):
    steps = 64
    rate = _rate(make_neuron(kind, v_threshold=1.0, v_init=v_init), X, steps)
    # integrate-and-fire with soft reset: error below one spike over the window
    assert torch.all((rate - X.clamp(min=0)).abs() <= 1.0 / steps + 1e-6)
    assert torch.all(rate[X <= 0] == 0)


def test_threshold_scales_the_rate():
    rate = _rate(make_neuron("binary", v_threshold=2.0), torch.tensor([1.0, 3.0]), 64)
    assert torch.allclose(rate, torch.tensor([0.5, 1.0]), atol=1 / 64)


def test_half_threshold_start_rounds_instead_of_truncating():
    x, steps = torch.tensor([0.3]), 4  # 0.3 * 4 = 1.2 -> one spike either way; 0.9 -> 0 vs 1 spike
    assert _rate(make_neuron("binary", v_init=0.0), torch.tensor([0.225]), steps) == 0
    assert _rate(make_neuron("binary", v_init=0.5), torch.tensor([0.225]), steps) == 0.25
    assert _rate(make_neuron("binary", v_init=0.5), x, steps) == 0.25


def test_ternary_takes_back_overshoot_but_never_goes_negative():
    seq = [1.0] * 4 + [-0.5] * 8  # mean input 0: ReLU(mean) = 0
    ternary, binary = make_neuron("ternary"), make_neuron("binary")
    t_out = torch.stack([ternary(torch.tensor([v])) for v in seq])
    b_out = torch.stack([binary(torch.tensor([v])) for v in seq])
    assert float(b_out.sum()) == 4.0  # binary cannot correct: rate 1/3 for a zero mean input
    assert float(t_out.sum()) == 0.0
    assert set(t_out.flatten().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.all(t_out.cumsum(0) >= 0)
    # a purely negative input never spikes at all
    assert _rate(make_neuron("ternary"), torch.tensor([-0.7]), 32) == 0


@pytest.mark.parametrize("cls", [IFNeuron, GuardedTernaryIFNode])
def test_reset_restores_initial_state_and_multi_step_matches(cls):
    single = cls(1.0, 0.5)
    x = torch.rand(8, 5) * 2 - 0.5  # [T, N]
    out_s = torch.stack([single(x[t]) for t in range(8)])
    single.reset()
    assert torch.equal(torch.stack([single(x[t]) for t in range(8)]), out_s)
    multi = cls(1.0, 0.5, step_mode="m")
    assert torch.equal(multi(x), out_s)


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_surrogate_gradient_flows(kind):
    x = torch.full((16,), 0.6, requires_grad=True)
    neuron = make_neuron(kind)
    torch.stack([neuron(x) for _ in range(4)]).sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad)) and x.grad.abs().sum() > 0


def test_unknown_neuron_type():
    with pytest.raises(ValueError, match="neuron type must be one of"):
        make_neuron("leaky")


@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_inference_fast_path_matches_the_training_path(kind, step_mode):
    """Without autograd the neurons update their state in place; spikes and states must not change."""
    torch.manual_seed(0)
    xs = torch.randn(12, 3, 50) * 1.5  # inputs that turn negative after a positive start, and back
    fast, slow = make_neuron(kind, 0.7, 0.5, step_mode), make_neuron(kind, 0.7, 0.5, step_mode)
    with torch.no_grad():
        out_fast = fast(xs) if step_mode == "m" else torch.stack([fast(x) for x in xs])
    out_slow = slow(xs) if step_mode == "m" else torch.stack([slow(x) for x in xs])
    assert torch.equal(out_fast, out_slow.detach())
    assert (out_fast < 0).any() and (out_fast > 0).any() if kind == "ternary" else (out_fast > 0).any()
    for name in slow._memories:
        assert torch.allclose(getattr(fast, name), getattr(slow, name).detach(), atol=1e-6)


def test_inference_after_a_training_step_leaves_the_training_state_alone():
    neuron = GuardedTernaryIFNode(1.0, 0.5)
    x = torch.full((4,), 2.0, requires_grad=True)
    out = neuron(x)
    v_trained, v_values = neuron.v, neuron.v.detach().clone()
    with torch.no_grad():
        neuron(torch.full((4,), 0.3))  # in-place updates must start from a copy of a state in the autograd graph
    assert torch.equal(v_trained.detach(), v_values)
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_compiled_kernel_matches_the_eager_step(kind):
    torch.manual_seed(0)
    xs = torch.randn(6, 2, 3, 5, 4, 6) * 1.5
    eager, fused = make_neuron(kind, 0.7, 0.5), set_kernel(make_neuron(kind, 0.7, 0.5), "compiled")
    with torch.no_grad():
        for x in xs:
            assert torch.equal(fused(x), eager(x))
    for name in eager._memories:
        assert torch.allclose(getattr(fused, name), getattr(eager, name), atol=1e-6)


# each surrogate and each neuron type once (every pair is one more compilation: seconds of CI each)
@pytest.mark.parametrize(
    "kind, surrogate", [("ternary", "atan"), ("ternary", "piecewise_quadratic"), ("binary", "sigmoid")]
)
def test_compiled_training_step_gives_the_eager_spikes_and_surrogate_gradients(kind, surrogate):
    from spikingjelly.activation_based import functional

    from bundle.spiking.neurons import set_surrogate

    torch.manual_seed(0)
    xs = torch.randn(4, 2, 3, 5, 4, 6) * 1.5
    weight = torch.linspace(-1, 1, xs[0].numel()).view_as(xs[0])
    results = []
    for kernel in ("eager", "compiled"):
        neuron = set_kernel(set_surrogate(make_neuron(kind, 0.7, 0.5), surrogate), kernel)
        x = xs.clone().requires_grad_(True)
        spikes = torch.stack([neuron(x[t]) for t in range(len(x))])  # T steps through the membrane
        ((spikes * weight).sum() + (neuron.v**2).sum()).backward()
        results.append((spikes.detach(), x.grad))
        functional.reset_net(neuron)
    (eager_spikes, eager_grad), (fused_spikes, fused_grad) = results
    assert torch.equal(fused_spikes, eager_spikes)
    assert eager_grad.abs().sum() > 0
    assert torch.allclose(fused_grad, eager_grad, rtol=1e-4, atol=1e-5)
    step = kernels.train_step(kind, type(neuron.surrogate_function).primitive_function)
    assert step in kernels._compiled and step not in kernels._failed  # the fused step ran, not the fallback


def test_the_rate_penalty_trains_through_the_eager_step():
    neuron = set_kernel(GuardedTernaryIFNode(0.7), "compiled")
    neuron.track_activity = True  # the fused step does not count activity: this one must not take it
    assert neuron._train_kernel("ternary") is None
    neuron.track_activity = False
    primitive = neuron.surrogate_function.primitive_function
    assert neuron._train_kernel("ternary") is kernels.train_step("ternary", primitive)


def test_a_kernel_that_cannot_compile_falls_back_to_the_eager_step(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(kernels, "_compiled", {kernels.binary_step: broken})
    monkeypatch.setattr(kernels, "_failed", set())
    neuron, reference = set_kernel(IFNeuron(1.0), "compiled"), IFNeuron(1.0)
    x = torch.rand(3, 4) * 2
    with torch.no_grad():
        assert torch.equal(neuron(x), reference(x))
        assert torch.equal(neuron(x), reference(x))  # second step: eager without trying again
    assert kernels.binary_step in kernels._failed
    assert sum("running the eager step" in r.message for r in caplog.records) == 1


def test_unknown_kernel():
    with pytest.raises(ValueError, match="kernel must be one of"):
        set_kernel(IFNeuron(), "cuda")


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_membrane_stays_float32_under_mixed_precision(kind):
    neuron = make_neuron(kind, 1.0, 0.5)
    x = torch.full((2, 8), 0.01, dtype=torch.bfloat16)
    with torch.no_grad():
        for _ in range(3):
            spikes = neuron(x)
    assert neuron.v.dtype == torch.float32 and spikes.dtype == torch.bfloat16
    assert torch.allclose(
        neuron.v, torch.full((2, 8), 0.5 + 3 * 0.01), atol=1e-4
    )  # bfloat16 would round 0.51 to 0.5078


def test_inference_keeps_the_recorded_voltage_sequence():
    """store_v_seq keeps each step's membrane: the in-place inference step must not overwrite them."""
    xs = torch.rand(5, 3, 4)
    fast, slow = GuardedTernaryIFNode(0.5, 0.5, step_mode="m"), GuardedTernaryIFNode(0.5, 0.5, step_mode="m")
    fast.store_v_seq = slow.store_v_seq = True
    with torch.no_grad():
        fast(xs)
    slow(xs)
    assert torch.allclose(fast.v_seq, slow.v_seq.detach()) and not torch.equal(fast.v_seq[0], fast.v_seq[-1])
