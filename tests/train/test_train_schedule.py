"""Learning-rate schedules at their boundaries."""

from __future__ import annotations

import pytest

from dscoder.errors import UserError
from dscoder.train.schedule import MULTISTEP_FACTOR, Schedule


def test_multistep_warms_up_then_steps_down_at_80_and_90_percent():
    s = Schedule("multistep", max_lr=1e-3, total_steps=1000, warmup_steps=100)
    assert s(0) == pytest.approx(1e-5)
    assert s(49) == pytest.approx(5e-4)
    assert s(99) == pytest.approx(1e-3)
    assert s(100) == s(799) == pytest.approx(1e-3)
    assert s(800) == s(899) == pytest.approx(1e-3 * 0.316)
    assert s(900) == s(999) == pytest.approx(1e-3 * 0.316**2)
    assert MULTISTEP_FACTOR == 0.316


def test_cosine_goes_from_the_peak_to_the_floor():
    s = Schedule("cosine", max_lr=2e-5, total_steps=1100, warmup_steps=100, min_lr_ratio=0.1)
    assert s(99) == pytest.approx(2e-5)
    assert s(100) == pytest.approx(2e-5)
    assert s(600) == pytest.approx(2e-5 * (0.1 + 0.9 * 0.5), rel=1e-2)
    assert s(1099) == pytest.approx(2e-6)
    values = [s(i) for i in range(100, 1100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_constant_and_no_warmup():
    s = Schedule("constant", max_lr=3e-4, total_steps=10, warmup_steps=0)
    assert [s(i) for i in range(10)] == [3e-4] * 10


@pytest.mark.parametrize("kwargs", [
    dict(kind="linear"), dict(max_lr=0), dict(total_steps=0), dict(warmup_steps=10), dict(min_lr_ratio=2),
])
def test_bad_settings_are_user_errors(kwargs):
    settings = dict(kind="cosine", max_lr=1e-3, total_steps=10, warmup_steps=1) | kwargs
    with pytest.raises(UserError):
        Schedule(**settings)
