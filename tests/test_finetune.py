"""Spike-based fine-tuning: surrogate gradients reach every weight, and training lowers the loss."""

import pytest
import torch
from conftest import tiny_unet, trained_like
from monai.engines import SupervisedTrainer
from monai.losses import DiceLoss

from bundle.spiking.conversion import convert, one_at_a_time
from bundle.spiking.segmenter import SpikingSegmenter


def _problem(seed=0):
    torch.manual_seed(seed)
    x = torch.rand(4, 1, 32, 32)
    y = (x > 0.6).long() + (x > 0.85).long()  # three "classes" from intensity
    return trained_like(tiny_unet(2), x), x, y


def test_gradients_reach_every_trainable_parameter():
    ann, x, y = _problem()
    seg = SpikingSegmenter(convert(ann, one_at_a_time([x]), neuron="ternary"), timesteps=3)
    loss = DiceLoss(to_onehot_y=True, softmax=True)(seg(x), y)
    loss.backward()
    params = dict(seg.named_parameters())
    assert params, "the converted SNN has no trainable parameters"
    missing = [
        n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not missing, f"no gradient reached {missing}"


def test_compiled_neuron_step_gives_every_parameter_the_eager_gradient_for_a_monai_batch():
    # a training batch is a MetaTensor; traced into the compiled step it once left 79 of 82 parameters
    # of the bundle's U-Net without a gradient, and fine-tuning silently stood still
    import warnings

    from monai.data import MetaTensor

    from bundle.spiking.neurons import set_kernel, set_surrogate
    from bundle.training.finetune import learnable_scales

    ann, x, y = _problem()
    snn = learnable_scales(convert(ann, one_at_a_time([x]), neuron="ternary"))
    seg = SpikingSegmenter(set_surrogate(snn, "atan"), timesteps=3)
    start = {k: v.clone() for k, v in seg.state_dict().items()}
    grads = {}
    for kernel in ("eager", "compiled"):
        seg.load_state_dict(start)
        seg.zero_grad()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            DiceLoss(to_onehot_y=True, softmax=True)(set_kernel(seg, kernel)(MetaTensor(x)), y).backward()
        assert not [w for w in caught if "Dynamo" in str(w.message)]  # the compiler did not trace the metadata
        grads[kernel] = {n: p.grad for n, p in seg.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads["eager"].values())
    for name, eager in grads["eager"].items():
        fused = grads["compiled"][name]
        assert fused is not None and torch.allclose(fused, eager, rtol=1e-3, atol=1e-6 * eager.abs().max()), name


def test_one_epoch_of_spiking_training_lowers_the_loss():
    ann, x, y = _problem()
    seg = SpikingSegmenter(convert(ann, one_at_a_time([x])), timesteps=4)
    loss_fn = DiceLoss(to_onehot_y=True, softmax=True, batch=True)
    with torch.no_grad():
        before = float(loss_fn(seg(x), y))
    data = [{"image": x, "label": y}] * 30  # one epoch = 30 steps on the same batch
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=seg,
        optimizer=torch.optim.Adam(seg.parameters(), 1e-2),
        loss_function=loss_fn,
        decollate=False,
    )
    trainer.run()
    with torch.no_grad():
        after = float(loss_fn(seg.eval()(x), y))
    assert after < before - 0.01, (before, after)


def test_learnable_scales_train_and_keep_the_checkpoint_format(tmp_path):
    from spikingjelly.activation_based.ann2snn.modules import VoltageScaler

    from bundle.spiking.checkpoint import load_snn
    from bundle.training.finetune import learnable_scales, save_finetuned

    ann, x, y = _problem()
    snn = convert(ann, one_at_a_time([x]), neuron="ternary")
    keys = set(snn.state_dict())
    with torch.no_grad():
        before = SpikingSegmenter(snn, timesteps=3)(x)
    learnable_scales(snn, "true")  # a command-line string works as well as a bool
    scales = [m.scale for m in snn.modules() if isinstance(m, VoltageScaler)]
    assert scales and all(isinstance(s, torch.nn.Parameter) for s in scales)
    assert set(snn.state_dict()) == keys
    seg = SpikingSegmenter(snn, timesteps=3)
    with torch.no_grad():
        assert torch.equal(seg(x), before)  # same network, only trainable now
    DiceLoss(to_onehot_y=True, softmax=True)(seg(x), y).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in scales)
    with torch.no_grad():
        scales[1].mul_(1.5)
    torch.save({"model": seg.state_dict()}, tmp_path / "best.pt")  # what CheckpointSaver writes
    settings = {"mode": "99.9%", "channel_wise": False, "neuron": "ternary", "v_init": 0.5, "timesteps": 16}
    path = save_finetuned(tmp_path / "best.pt", settings, tmp_path / "ft.pt", timesteps=3, epochs=2)
    loaded, saved = load_snn(ann, path)
    assert saved["timesteps"] == 3 and saved["finetuned"] == {"timesteps": 3, "epochs": 2}
    with torch.no_grad():
        assert torch.allclose(SpikingSegmenter(loaded, timesteps=3)(x), seg(x))


def test_surrogate_changes_gradients_not_spikes():
    from bundle.spiking.neurons import set_surrogate

    ann, x, y = _problem()
    snn = convert(ann, one_at_a_time([x]), neuron="ternary")
    seg = SpikingSegmenter(snn, timesteps=3)
    grads, outs = [], []
    for name in ("atan", "sigmoid"):
        set_surrogate(snn, name, 4.0)
        seg.zero_grad()
        out = seg(x)
        DiceLoss(to_onehot_y=True, softmax=True)(out, y).backward()
        outs.append(out.detach())
        grads.append(next(p for p in seg.parameters()).grad.clone())
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])
    try:
        set_surrogate(snn, "nonsense")
    except ValueError as e:
        assert "atan" in str(e)
    else:
        raise AssertionError("an unknown surrogate was accepted")


@pytest.mark.parametrize(
    "enabled, schedule, restart, cleared_after",
    [(True, "restart", 2, [2]), (False, "restart", 2, []), (True, "restart", 5, []), (True, "cosine", 2, [])],
)
def test_fresh_optimizer_state_at_the_restart_only(enabled, schedule, restart, cleared_after):
    """Adam's moments are dropped once, when the restart epoch ends; off, another schedule, or a restart past
    the end: never."""
    from ignite.engine import Engine, Events

    from bundle.training.finetune import FreshOptimizerAtRestart

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight], lr=0.1)

    def step(engine, batch):
        optimizer.zero_grad()
        (weight**2).sum().backward()
        optimizer.step()

    engine = Engine(step)
    FreshOptimizerAtRestart(optimizer, schedule, restart, epochs=4, enabled=enabled).attach(engine)
    empty_after = []

    @engine.on(Events.EPOCH_COMPLETED)
    def record(engine):
        if not optimizer.state:
            empty_after.append(engine.state.epoch)

    engine.run([0, 1], max_epochs=4)
    assert empty_after == cleared_after
