"""Stage-3 loss levers: a differentiable firing-rate penalty and distillation from the ANN's logits."""

import copy

import pytest
import torch
from conftest import tiny_snn, tiny_unet, trained_like
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss, DiceLoss

from bundle.errors import InputError
from bundle.networks.precision import MixedPrecision
from bundle.spiking.segmenter import SpikingSegmenter
from bundle.training.finetune import learnable_scales, param_groups
from bundle.training.losses import WithTeacher, distillation, finetune_loss

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (conftest.py)


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    y = (x > 0.6).long() + (x > 0.85).long()  # three "classes" from intensity
    ann = trained_like(tiny_unet(2), x)
    return ann, tiny_snn(ann, x), x, y


def _segmenter(problem, timesteps=3):
    _, snn, _, _ = problem
    return SpikingSegmenter(learnable_scales(copy.deepcopy(snn)), timesteps=timesteps)


def test_both_weights_zero_is_todays_loss(problem):
    _, _, x, y = problem
    for kind, reference in (("dice", DiceLoss), ("dice_ce", DiceCELoss)):
        seg = _segmenter(problem)
        loss = finetune_loss(kind, seg)
        assert loss.network is seg and not any(m.track_activity for m in seg._neurons())
        pred = seg(x)
        expected = reference(to_onehot_y=True, softmax=True, batch=True)(pred, y)
        assert torch.equal(loss(pred, y), expected)
    with pytest.raises(InputError, match="finetune_loss"):
        finetune_loss("focal", seg)
    with pytest.raises(ValueError, match="needs the ANN"):
        finetune_loss("dice", seg, distill_weight=1.0)


def test_spike_rate_is_counted_with_a_gradient_and_inference_is_unchanged(problem):
    _, _, x, _ = problem
    seg = _segmenter(problem)
    with torch.no_grad():
        before = seg.eval()(x)
    seg.track_activity(True)
    with torch.no_grad():
        assert torch.equal(seg(x), before) and seg.spike_rate() is None  # no autograd step, nothing counted
    seg.train()
    seg(x)
    rate = seg.spike_rate()
    assert rate.requires_grad and 0 < float(rate) < 1
    rate.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in seg.parameters())
    seg(x[:2])  # reset per forward: the same images give the same rate
    assert float(seg.spike_rate()) == pytest.approx(float(rate), rel=0.2)


def test_gradients_reach_every_parameter_with_both_levers(problem):
    ann, _, x, y = problem
    seg = _segmenter(problem)
    loss = finetune_loss(
        "dice", MixedPrecision(seg, False), rate_penalty=0.1, distill_weight=0.5, temperature=2.0, ann=ann
    )
    assert isinstance(loss.network, WithTeacher) and loss.segmenter is seg
    net = loss.network.train()
    value = loss(net(x), y)
    assert set(loss.terms) == {"segmentation", "firing_rate", "distillation"}
    value.backward()
    missing = [n for n, p in seg.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"
    teacher = loss.network.teacher
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert all(p.requires_grad for p in ann.parameters())  # a frozen copy: the caller's ANN is left as it was
    assert not any(k.startswith("teacher") for k in seg.state_dict())  # what is saved is the segmenter alone


def test_distillation_term():
    a = torch.randn(2, 3, 5, 5)
    assert float(distillation(a, a, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation(a, -a, 1.0)) > 0.1
    # tau**2 keeps the size of the gradient comparable across temperatures
    assert float(distillation(a, a + 0.1 * torch.randn_like(a), 4.0)) > 0


def _train(problem, rate_penalty, steps=25):
    _, _, x, y = problem
    torch.manual_seed(1)
    seg = _segmenter(problem)
    loss = finetune_loss("dice", seg, rate_penalty=rate_penalty)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[{"image": x, "label": y}] * steps,
        network=loss.network,
        optimizer=torch.optim.Adam(param_groups(seg, 1e-2, 1e-2)),
        loss_function=loss,
        decollate=False,
    )
    trainer.run()
    seg.track_activity(True).train()
    seg(x)  # the firing rate after training, on the same images
    return float(seg.spike_rate()), loss.terms["segmentation"]


def test_the_penalty_lowers_the_firing_rate(problem):
    start = _segmenter(problem).track_activity(True).train()
    start(problem[2])
    initial = float(start.spike_rate())
    plain, _ = _train(problem, 0.0)
    penalised, dice = _train(problem, 2.0)
    assert penalised < 0.7 * min(plain, initial), (initial, plain, penalised)
    assert dice < 0.9  # still segmenting, not only silenced
