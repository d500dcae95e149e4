"""Learning-rate schedules picked by name (``finetune_lr_schedule``)."""

import pytest
import torch

from bundle.errors import InputError
from bundle.training.schedules import SCHEDULES, lr_schedule


def _optimizer():
    weights, scales = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.Adam([{"params": [weights], "lr": 1e-4}, {"params": [scales], "lr": 1e-3}])


def _rates(name, epochs, *args):
    optimizer = _optimizer()
    scheduler = lr_schedule(name, optimizer, epochs, *args)
    rates = []  # flat: [weights, scales] per epoch
    for _ in range(epochs):
        rates.extend(g["lr"] for g in optimizer.param_groups)
        optimizer.step()
        scheduler.step()
    return rates


def test_restart_is_the_shipped_two_rounds_in_one_run():
    """4 epochs cosine from 1e-4, then 5 epochs cosine from 5e-5; the scales restart at their own 1e-3."""
    rates = _rates("restart", 9, 4, 0.5)
    assert rates[:8] == pytest.approx(_rates("cosine", 4))
    assert rates[8:10] == pytest.approx([5e-5, 1e-3])
    round2 = _rates("cosine", 5)
    round2[0::2] = [0.5 * w for w in round2[0::2]]
    assert rates[8:] == pytest.approx(round2)
    assert rates[6] < rates[8] and rates[-2] < rates[-4]


def test_restart_after_the_last_epoch_is_one_cosine():
    assert _rates("restart", 3, 4, 0.5) == pytest.approx(_rates("cosine", 3))


def test_restart_schedule_resumes_where_it_stopped():
    optimizer = _optimizer()
    scheduler = lr_schedule("restart", optimizer, 9, 4, 0.5)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = _optimizer()
    fresh = lr_schedule("restart", fresh_optimizer, 9, 4, 0.5)
    fresh.load_state_dict(state)
    fresh_optimizer.param_groups[0]["lr"], fresh_optimizer.param_groups[1]["lr"] = fresh.get_last_lr()
    assert fresh.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    for _ in range(2):
        for o, s in ((optimizer, scheduler), (fresh_optimizer, fresh)):
            o.step()
            s.step()
    assert fresh.get_last_lr() == pytest.approx(scheduler.get_last_lr())


def test_unknown_schedule_names_the_choices():
    with pytest.raises(InputError, match="must be one of cosine, restart, constant, not 'sgdr'"):
        lr_schedule("sgdr", _optimizer(), 9)
    assert "restart" in SCHEDULES


@pytest.mark.parametrize("name", SCHEDULES)
def test_warmup_ramps_up_then_follows_the_schedule(name):
    """2 warm-up epochs: 1/3 and 2/3 of the schedule's own rate, then exactly the schedule."""
    plain, warm = _rates(name, 6, 3, 0.5), _rates(name, 6, 3, 0.5, 2)
    assert warm[0:2] == pytest.approx([p / 3 for p in plain[0:2]])
    assert warm[2:4] == pytest.approx([2 * p / 3 for p in plain[2:4]])
    assert warm[4:] == pytest.approx(plain[4:])
