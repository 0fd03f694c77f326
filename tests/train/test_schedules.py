import io
import math

import pytest
import torch

from autocompress.errors import ConfigError
from autocompress.train.schedules import SUPPORTED_SCHEDULES, build_scheduler, current_lr, is_plateau


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)


def _lrs(spec, steps):
    opt = _optimizer()
    sched = build_scheduler(opt, spec)
    out = []
    for _ in range(steps):
        out.append(current_lr(opt))
        opt.step()
        sched.step()
    return out


CASES = [
    (0.05, {0: 0.05, 9: 0.05}),
    ({"type": "StepDecay", "learning_rate": 0.1, "step_size": 3, "gamma": 0.5}, {0: 0.1, 2: 0.1, 3: 0.05, 6: 0.025}),
    ({"type": "MultiStepDecay", "learning_rate": 0.1, "milestones": [2, 5]}, {1: 0.1, 2: 0.01, 4: 0.01, 5: 0.001}),
    ({"type": "ExponentialDecay", "learning_rate": 0.1, "gamma": 0.9}, {0: 0.1, 5: 0.1 * 0.9**5}),
    ({"type": "NaturalExpDecay", "learning_rate": 0.1, "gamma": 0.5}, {0: 0.1, 4: 0.1 * math.exp(-2.0)}),
    (
        {"type": "CosineAnnealingDecay", "learning_rate": 0.1, "T_max": 10, "eta_min": 0.01},
        {0: 0.1, 5: 0.055, 10: 0.01, 3: 0.01 + 0.09 * (1 + math.cos(math.pi * 0.3)) / 2},
    ),
    (
        {"type": "PiecewiseDecay", "boundaries": [3, 6], "values": [0.1, 0.05, 0.01]},
        {2: 0.1, 3: 0.05, 6: 0.01, 9: 0.01},
    ),
    (
        {"type": "PolynomialDecay", "learning_rate": 0.1, "decay_steps": 4, "end_lr": 0.0, "power": 2.0},
        {0: 0.1, 2: 0.025, 4: 0.0, 7: 0.0},
    ),
    (
        {"type": "PolynomialDecay", "learning_rate": 0.1, "decay_steps": 4, "end_lr": 0.0, "power": 2.0, "cycle": True},
        {2: 0.025, 5: 0.1 * (1 - 5 / 8) ** 2},
    ),
    ({"type": "InverseTimeDecay", "learning_rate": 0.1, "gamma": 0.5}, {0: 0.1, 4: 0.1 / 3}),
    ({"type": "NoamDecay", "d_model": 16, "warmup_steps": 4}, {0: 0.0, 2: 0.0625, 8: 0.25 * 8**-0.5}),
    (
        {"type": "LinearWarmup", "learning_rate": 0.1, "warmup_steps": 4, "start_lr": 0.0, "end_lr": 0.1},
        {0: 0.0, 2: 0.05, 4: 0.1, 9: 0.1},
    ),
    (
        {
            "type": "LinearWarmup",
            "warmup_steps": 3,
            "start_lr": 0.01,
            "end_lr": 0.1,
            "learning_rate": {"type": "StepDecay", "learning_rate": 0.1, "step_size": 2, "gamma": 0.5},
        },
        {0: 0.01, 1: 0.04, 2: 0.07, 3: 0.1, 4: 0.1, 5: 0.05, 6: 0.05, 7: 0.025},
    ),
    (
        {
            "type": "LinearWarmup",
            "warmup_steps": 2,
            "start_lr": 0.0,
            "end_lr": 0.2,
            "learning_rate": {"type": "PiecewiseDecay", "boundaries": [1], "values": [0.2, 0.02]},
        },
        {0: 0.0, 1: 0.1, 2: 0.2, 3: 0.02, 6: 0.02},
    ),
    (
        {"type": "LinearLR", "learning_rate": 0.1, "total_steps": 4, "start_factor": 0.5},
        {0: 0.05, 2: 0.075, 4: 0.1, 8: 0.1},
    ),
    (
        {
            "type": "OneCycleLR",
            "max_learning_rate": 0.1,
            "total_steps": 10,
            "divide_factor": 10.0,
            "end_learning_rate": 0.001,
        },
        {0: 0.01, 2: 0.1, 9: 0.001},
    ),
    (
        {"type": "CyclicLR", "base_learning_rate": 0.01, "max_learning_rate": 0.1, "step_size_up": 2},
        {0: 0.01, 1: 0.055, 2: 0.1, 3: 0.055, 4: 0.01},
    ),
]


@pytest.mark.parametrize("spec,expected", CASES, ids=lambda v: v.get("type") if isinstance(v, dict) else None)
def test_schedule_values_at_chosen_steps(spec, expected):
    lrs = _lrs(spec, max(expected) + 1)
    for step, value in expected.items():
        assert lrs[step] == pytest.approx(value, rel=1e-6, abs=1e-12), f"step {step}: {lrs}"


def test_every_documented_schedule_is_covered():
    tested = {spec["type"] for spec, _ in CASES if isinstance(spec, dict)}
    assert set(SUPPORTED_SCHEDULES) - tested == {"ReduceOnPlateau"}


@pytest.mark.parametrize("spec,_", [c for c in CASES if isinstance(c[0], dict)])
def test_state_round_trips_through_weights_only_load_and_continues_identically(spec, _):
    opt = _optimizer()
    sched = build_scheduler(opt, spec)
    for _ in range(3):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    opt2 = _optimizer()
    sched2 = build_scheduler(opt2, spec)
    sched2.load_state_dict(torch.load(buffer, weights_only=True))
    opt2.param_groups[0]["lr"] = current_lr(opt)  # optimizer state restores the lr in training
    for _ in range(5):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert current_lr(opt2) == pytest.approx(current_lr(opt), rel=1e-9)


def test_reduce_on_plateau_is_stepped_with_a_loss():
    opt = _optimizer()
    sched = build_scheduler(opt, {"type": "ReduceOnPlateau", "learning_rate": 0.1, "patience": 1, "factor": 0.5})
    assert is_plateau(sched)
    for _ in range(3):
        sched.step(1.0)
    assert current_lr(opt) == pytest.approx(0.05)


def test_unknown_schedule_lists_supported_names():
    with pytest.raises(ConfigError, match="CosineAnnealingDecay") as err:
        build_scheduler(_optimizer(), {"type": "CosineDecayy", "learning_rate": 0.1})
    assert "CosineDecayy" in str(err.value)


def test_unknown_and_missing_arguments_are_named():
    with pytest.raises(ConfigError, match="'step'"):
        build_scheduler(_optimizer(), {"type": "StepDecay", "learning_rate": 0.1, "step": 3})
    with pytest.raises(ConfigError, match="step_size"):
        build_scheduler(_optimizer(), {"type": "StepDecay", "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="one more value"):
        build_scheduler(_optimizer(), {"type": "PiecewiseDecay", "boundaries": [1, 2], "values": [0.1, 0.2]})
