"""The weight-average handler: the running average itself, the swap around a validation, resume."""

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from bundle.training.averaging import WeightAverage


def _net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def test_average_follows_the_ramped_decay_and_copies_integer_buffers():
    net = _net()
    avg = WeightAverage(net, Engine(lambda e, b: None), decay=0.9)
    want = 1.0  # the first update starts from the weights themselves
    for n in range(30):
        with torch.no_grad():
            net[0].weight.fill_(float(n + 1))
            net[1].num_batches_tracked.fill_(n + 1)
        avg.update()
        d = min(0.9, (1 + n) / (10 + n))
        want = d * want + (1 - d) * float(n + 1)
    assert torch.allclose(avg.average["0.weight"], torch.full((2, 2), want), atol=1e-4)
    assert avg.average["1.num_batches_tracked"].item() == 30
    assert avg.average["0.weight"][0, 0].item() < 29  # it lags the live weights


def test_evaluator_sees_the_average_and_training_gets_its_weights_back():
    net = _net()
    seen = []
    evaluator = Engine(lambda e, b: seen.append(net[0].weight.detach().clone()))
    trainer = Engine(lambda e, b: None)
    avg = WeightAverage(net, evaluator, decay=0.5)
    avg.attach(trainer)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    avg.update()
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    avg.update()  # d = min(0.5, 2/11): 2/11 * 1 + 9/11 * 3
    evaluator.run([0, 1], max_epochs=1)
    assert all(torch.allclose(w, torch.full((2, 2), 2 / 11 + 27 / 11)) for w in seen) and len(seen) == 2
    assert torch.equal(net[0].weight, torch.full((2, 2), 3.0))


def test_decay_zero_attaches_nothing_and_bad_decay_is_refused():
    net = _net()
    evaluator = Engine(lambda e, b: None)
    trainer = Engine(lambda e, b: None)
    WeightAverage(net, evaluator, decay=0.0).attach(trainer)
    assert not trainer._event_handlers.get("iteration_completed") and not evaluator._event_handlers.get("started")
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, evaluator, decay=1.0)


def test_state_dict_round_trip_keeps_the_average():
    net = _net()
    avg = WeightAverage(net, Engine(lambda e, b: None), decay=0.99)
    with torch.no_grad():
        net[0].bias.fill_(2.0)
    avg.update()
    avg.update()
    saved = avg.state_dict()
    fresh = WeightAverage(_net(), Engine(lambda e, b: None), decay=0.99)
    fresh.load_state_dict(saved)
    assert fresh.updates == 2 and torch.equal(fresh.average["0.bias"], avg.average["0.bias"])
    assert fresh.average["0.bias"] is not avg.average["0.bias"]
