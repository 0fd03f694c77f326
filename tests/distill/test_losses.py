import math

import pytest
import torch
import torch.nn.functional as F

from autocompress.distill.losses import fsp_loss, fsp_matrix, l2_loss, soft_label_loss


def _grad_flows(loss: torch.Tensor, student: torch.Tensor) -> bool:
    loss.backward()
    return student.grad is not None and bool(student.grad.abs().sum() > 0)


def test_l2_is_mean_squared_difference_and_differentiable():
    torch.manual_seed(0)
    t = torch.randn(2, 3, 4, 4)
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = l2_loss(t, s)
    assert loss.item() == pytest.approx(((s.detach() - t) ** 2).sum().item() / t.numel(), rel=1e-6)
    assert _grad_flows(loss, s)
    torch.testing.assert_close(s.grad, 2 * (s.detach() - t) / t.numel())


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_soft_label_on_logits_is_t2_times_kl(temperature):
    torch.manual_seed(0)
    t = torch.randn(5, 7)
    s = torch.randn(5, 7, requires_grad=True)
    p_t = torch.softmax(t / temperature, -1)
    expected = (
        sum(
            sum(
                p_t[n, c] * (math.log(p_t[n, c]) - math.log(torch.softmax(s[n].detach() / temperature, -1)[c]))
                for c in range(7)
            )
            for n in range(5)
        )
        / 5
        * temperature**2
    )
    loss = soft_label_loss(t, s, temperature)
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
    assert _grad_flows(loss, s)
    assert soft_label_loss(t, t.clone(), temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_label_gradient_equals_paddleslim_cross_entropy_gradient():
    torch.manual_seed(1)
    t, s = torch.randn(4, 6), torch.randn(4, 6, requires_grad=True)
    soft_label_loss(t, s, 2.0).backward()
    s2 = s.detach().clone().requires_grad_(True)
    ce = -(torch.softmax(t / 2, -1) * torch.log_softmax(s2 / 2, -1)).sum(-1).mean() * 4
    ce.backward()
    torch.testing.assert_close(s.grad, s2.grad)


def test_soft_label_uses_channel_axis_for_nchw_and_last_axis_for_sequences():
    torch.manual_seed(2)
    t, s = torch.randn(2, 5, 3, 3), torch.randn(2, 5, 3, 3)
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 5)  # noqa: E731
    assert soft_label_loss(t, s).item() == pytest.approx(soft_label_loss(flat(t), flat(s)).item(), rel=1e-5)
    t3, s3 = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    assert soft_label_loss(t3, s3).item() == pytest.approx(
        soft_label_loss(t3.reshape(-1, 6), s3.reshape(-1, 6)).item(), rel=1e-5
    )


def _binary_kl(p_t, p_s):
    return p_t * torch.log(p_t / p_s) + (1 - p_t) * torch.log((1 - p_t) / (1 - p_s))


def test_soft_label_on_single_channel_probability_map_is_binary_kl():
    torch.manual_seed(3)
    t = torch.sigmoid(torch.randn(2, 1, 4, 4))
    s = torch.sigmoid(torch.randn(2, 1, 4, 4)).requires_grad_(True)
    T = 2.0
    soften = lambda p: torch.sigmoid(torch.logit(p) / T)  # noqa: E731
    expected = _binary_kl(soften(t), soften(s.detach())).mean() * T**2
    loss = soft_label_loss(t, s, T)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert _grad_flows(loss, s)
    assert loss.item() > 0


def test_soft_label_on_single_channel_logits_is_binary_kl_of_sigmoids():
    torch.manual_seed(4)
    t, s = torch.randn(3, 1) * 3, torch.randn(3, 1) * 3
    t[0, 0], s[0, 0] = 2.5, -2.5  # outside [0, 1]: logits
    expected = _binary_kl(torch.sigmoid(t), torch.sigmoid(s)).mean()
    assert soft_label_loss(t, s).item() == pytest.approx(expected.item(), rel=1e-4)


def test_fsp_matrix_and_loss_match_their_definition():
    torch.manual_seed(5)
    ta, tb = torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 5)
    sa, sb = torch.randn(2, 3, 4, 5, requires_grad=True), torch.randn(2, 6, 4, 5)
    g = fsp_matrix(ta, tb)
    assert g.shape == (2, 3, 6)
    manual = sum(ta[1, 2, h, w] * tb[1, 4, h, w] for h in range(4) for w in range(5)) / 20
    assert g[1, 2, 4].item() == pytest.approx(manual.item(), rel=1e-5)
    loss = fsp_loss(ta, tb, sa, sb)
    assert loss.item() == pytest.approx(F.mse_loss(fsp_matrix(sa, sb), g).item(), rel=1e-6)
    assert _grad_flows(loss, sa)
