import pytest
import torch

from autocompress.config.train import TrainConfig
from autocompress.errors import ConfigError
from autocompress.train.optim import SUPPORTED_OPTIMIZERS, build_optimizer


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(4))]


def _build(optimizer, **extra):
    return build_optimizer(_params(), {"optimizer": optimizer, **extra})


@pytest.mark.parametrize(
    "spec,torch_class,expected",
    [
        ({"type": "SGD"}, torch.optim.SGD, {"momentum": 0, "weight_decay": 0.0}),
        ({"type": "Momentum"}, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        (
            {"type": "Momentum", "momentum": 0.8, "use_nesterov": True},
            torch.optim.SGD,
            {"momentum": 0.8, "nesterov": True},
        ),
        (
            {"type": "Adam", "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6},
            torch.optim.Adam,
            {"betas": (0.8, 0.99), "eps": 1e-6},
        ),
        ({"type": "AdamW", "beta2": 0.98}, torch.optim.AdamW, {"betas": (0.9, 0.98), "weight_decay": 0.01}),
        ({"type": "Adamax", "epsilon": 1e-7}, torch.optim.Adamax, {"eps": 1e-7}),
        (
            {"type": "Adagrad", "epsilon": 1e-5, "initial_accumulator_value": 0.1},
            torch.optim.Adagrad,
            {"eps": 1e-5, "initial_accumulator_value": 0.1},
        ),
        ({"type": "Adadelta", "rho": 0.9, "epsilon": 1e-5}, torch.optim.Adadelta, {"rho": 0.9, "eps": 1e-5}),
        (
            {"type": "RMSProp", "rho": 0.9, "epsilon": 1e-5, "momentum": 0.1, "centered": True},
            torch.optim.RMSprop,
            {"alpha": 0.9, "eps": 1e-5, "momentum": 0.1, "centered": True},
        ),
    ],
)
def test_paddle_optimizers_map_to_torch_with_renamed_arguments(spec, torch_class, expected):
    optimizer, _ = _build(dict(spec))
    assert type(optimizer) is torch_class
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == value, key


def test_all_optimizers_are_tested_above():
    assert set(SUPPORTED_OPTIMIZERS) == {"SGD", "Momentum", "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "RMSProp"}


@pytest.mark.parametrize(
    "extra",
    [
        {"weight_decay": 4e-5},
        {"regularizer": {"type": "L2Decay", "coeff": 4e-5}},
        {"weight_decay": {"type": "L2Decay", "coeff": 4e-5}},
    ],
)
def test_weight_decay_and_l2decay_are_torch_weight_decay(extra):
    optimizer, policy = _build({"type": "Momentum"}, **extra)
    assert optimizer.param_groups[0]["weight_decay"] == 4e-5
    assert policy.l1_coeff == 0


def test_l1decay_adds_coeff_times_sign_to_the_gradient():
    params = _params()
    optimizer, policy = build_optimizer(
        params, {"optimizer": {"type": "SGD"}, "regularizer": {"type": "L1Decay", "coeff": 0.01}}
    )
    assert optimizer.param_groups[0]["weight_decay"] == 0
    for p in params:
        p.grad = torch.zeros_like(p)
    policy.apply(params)
    for p in params:
        torch.testing.assert_close(p.grad, 0.01 * torch.sign(p.detach()))


def test_grad_clips():
    params = _params()
    _, policy = build_optimizer(
        params, {"optimizer": {"type": "SGD"}, "grad_clip": {"type": "ClipGradByGlobalNorm", "clip_norm": 1.0}}
    )
    params[0].grad, params[1].grad = torch.full((3, 4), 3.0), torch.full((4,), 4.0)
    policy.apply(params)
    total = torch.sqrt(sum((p.grad**2).sum() for p in params))
    assert total.item() == pytest.approx(1.0, rel=1e-5)

    _, policy = build_optimizer(
        params, {"optimizer": {"type": "SGD"}, "grad_clip": {"type": "ClipGradByNorm", "clip_norm": 1.0}}
    )
    params[0].grad, params[1].grad = torch.full((3, 4), 3.0), torch.full((4,), 0.1)
    policy.apply(params)
    assert params[0].grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(params[1].grad, torch.full((4,), 0.1))  # already below: untouched

    _, policy = build_optimizer(
        params, {"optimizer": {"type": "SGD"}, "grad_clip": {"type": "ClipGradByValue", "max": 0.5, "min": -0.1}}
    )
    params[0].grad = torch.tensor([[-1.0, 0.2, 2.0, -0.05]] * 3)
    policy.apply(params)
    torch.testing.assert_close(params[0].grad, torch.tensor([[-0.1, 0.2, 0.5, -0.05]] * 3))


def test_lamb_is_reported_as_unavailable():
    with pytest.raises(ConfigError, match="torch has no Lamb"):
        _build({"type": "Lamb"})


@pytest.mark.parametrize(
    "builder,match",
    [
        ({"optimizer": {"type": "Adagradd"}}, "Adagrad"),
        ({"optimizer": {"type": "Adam", "beta_1": 0.9}}, "'beta_1'"),
        (
            {"optimizer": {"type": "SGD"}, "weight_decay": 1e-4, "regularizer": {"type": "L2Decay", "coeff": 1e-4}},
            "not both",
        ),
        ({"optimizer": {"type": "SGD"}, "grad_clip": {"type": "ClipGradByNorm"}}, "clip_norm"),
        ({"optimizer": {"type": "SGD"}, "grad_clip": {"type": "ClipByNorm", "clip_norm": 1}}, "ClipGradByGlobalNorm"),
        ({"optimizer": {"type": "SGD"}, "regularizer": {"type": "L3Decay", "coeff": 1}}, "L1Decay"),
        ({"optimizer": {"type": "SGD"}, "momentum": 0.9}, "'momentum'"),
    ],
)
def test_config_errors_name_the_problem(builder, match):
    with pytest.raises(ConfigError, match=match):
        build_optimizer(_params(), builder)


def test_legacy_optimizer_keys_of_act2_build():
    config = TrainConfig(epochs=1, optimizer="SGD", optim_args={"weight_decay": 0.0005})
    optimizer, _ = build_optimizer(_params(), config.optimizer_builder)
    assert type(optimizer) is torch.optim.SGD and optimizer.param_groups[0]["weight_decay"] == 0.0005


def test_the_seeds_grid_clip_clips_gradients():
    config = TrainConfig(
        optimizer_builder={"optimizer": {"type": "SGD"}, "grid_clip": {"type": "ClipGradByValue", "max": 0.5}}
    )
    params = _params()
    _, policy = build_optimizer(params, config.optimizer_builder)
    params[0].grad, params[1].grad = torch.full((3, 4), 3.0), torch.full((4,), -2.0)
    policy.apply(params)
    torch.testing.assert_close(params[0].grad, torch.full((3, 4), 0.5))
    torch.testing.assert_close(params[1].grad, torch.full((4,), -0.5))
