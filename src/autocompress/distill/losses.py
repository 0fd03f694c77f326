"""Distillation losses of PaddleSlim (l2, soft_label, fsp) on torch tensors.

All losses are computed in float32 (teacher outputs may come out of autocast in bf16/fp16) and return a scalar.
Shapes are checked by the caller (distill.distiller), which knows the node names for the error message.

soft_label rule: the class axis is 1 for tensors of rank >= 4 (NCHW feature or segmentation maps) and the last axis
for rank <= 3 (logits [N, C] or sequence logits [N, T, C]). When the class axis has a single channel (a sigmoid map
such as DBNet's text probability [N, 1, H, W]) a softmax over it is constant, so the binary form is used: both maps
become Bernoulli probabilities sigmoid(logit / T) and the loss is their binary KL divergence. A single-channel map
whose values all lie in [0, 1] is taken to hold probabilities already (its logit is recovered first), otherwise logits.
Loss = T^2 * KL(teacher || student), averaged over every position (every element but the class axis). PaddleSlim
uses the cross entropy H(teacher, student), which differs by the teacher's entropy: a constant, so the gradients are
the same; KL is zero when the student matches, which makes the logged value readable. The T^2 factor (Hinton et
al.) keeps gradient magnitudes independent of T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PROB_EPS = 1e-6


def l2_loss(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Mean squared difference, PaddleSlim's l2: mean((student - teacher)^2)."""
    return torch.mean((student.float() - teacher.float()) ** 2)


def class_axis(rank: int) -> int:
    return 1 if rank >= 4 else rank - 1


def _is_probability(x: torch.Tensor) -> bool:
    return bool(x.min() >= 0) and bool(x.max() <= 1)


def _binary_logits(x: torch.Tensor, as_probability: bool) -> torch.Tensor:
    return torch.logit(x, eps=_PROB_EPS) if as_probability else x


def soft_label_loss(teacher: torch.Tensor, student: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) over the class axis; binary KL for one channel."""
    t, s = teacher.float(), student.float()
    axis = class_axis(t.dim())
    if t.shape[axis] == 1:
        as_probability = _is_probability(t) and _is_probability(s.detach())
        t_logit = _binary_logits(t, as_probability) / temperature
        s_logit = _binary_logits(s, as_probability) / temperature
        p_t = torch.sigmoid(t_logit)
        # KL(Bern(p_t) || Bern(p_s)) = BCE(p_s; p_t) - H(p_t), written with logits for stability.
        kl = F.binary_cross_entropy_with_logits(s_logit, p_t, reduction="none") - F.binary_cross_entropy_with_logits(
            t_logit, p_t, reduction="none"
        )
        return kl.mean() * temperature**2
    log_p_t = F.log_softmax(t / temperature, dim=axis)
    log_p_s = F.log_softmax(s / temperature, dim=axis)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=axis)
    return kl.mean() * temperature**2


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Flow of solution procedure (Yim et al.): G[n, i, j] = sum_hw a[n, i, hw] * b[n, j, hw] / (H*W)."""
    n, c_a = a.shape[:2]
    c_b = b.shape[1]
    a2 = a.float().reshape(n, c_a, -1)
    b2 = b.float().reshape(n, c_b, -1)
    return torch.bmm(a2, b2.transpose(1, 2)) / a2.shape[-1]


def fsp_loss(
    teacher_a: torch.Tensor, teacher_b: torch.Tensor, student_a: torch.Tensor, student_b: torch.Tensor
) -> torch.Tensor:
    """PaddleSlim's fsp loss: mean((FSP(student_a, student_b) - FSP(teacher_a, teacher_b))^2)."""
    return torch.mean((fsp_matrix(student_a, student_b) - fsp_matrix(teacher_a, teacher_b)) ** 2)
