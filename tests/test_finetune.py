"""Spike-based fine-tuning: surrogate gradients reach every weight, and training lowers the loss."""

import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceLoss

from bundle.networks import ConvertibleUNet
from bundle.spiking.conversion import convert, one_at_a_time
from bundle.spiking.segmenter import SpikingSegmenter


def _problem(seed=0):
    torch.manual_seed(seed)
    x = torch.rand(4, 1, 32, 32)
    y = (x > 0.6).long() + (x > 0.85).long()  # three "classes" from intensity
    ann = ConvertibleUNet(2, channels=(4, 8, 16))
    ann.train()
    with torch.no_grad():
        for _ in range(3):
            ann(x)
    return ann.eval(), x, y


def test_gradients_reach_every_trainable_parameter():
    ann, x, y = _problem()
    seg = SpikingSegmenter(convert(ann, one_at_a_time([x]), neuron="ternary"), timesteps=3)
    loss = DiceLoss(to_onehot_y=True, softmax=True)(seg(x), y)
    loss.backward()
    params = dict(seg.named_parameters())
    assert params, "the converted SNN has no trainable parameters"
    missing = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reached {missing}"


def test_one_epoch_of_spiking_training_lowers_the_loss():
    ann, x, y = _problem()
    seg = SpikingSegmenter(convert(ann, one_at_a_time([x])), timesteps=4)
    loss_fn = DiceLoss(to_onehot_y=True, softmax=True, batch=True)
    with torch.no_grad():
        before = float(loss_fn(seg(x), y))
    data = [{"image": x, "label": y}] * 30  # one epoch = 30 steps on the same batch
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=seg,
        optimizer=torch.optim.Adam(seg.parameters(), 1e-2), loss_function=loss_fn, decollate=False,
    )
    trainer.run()
    with torch.no_grad():
        after = float(loss_fn(seg.eval()(x), y))
    assert after < before - 0.01, (before, after)
