"""Teachers + student -> one weighted distillation loss per batch.

Teachers are frozen: their parameters never require grad, they stay in eval mode whatever `train()` is called
with, and they run under no_grad. Feeds: teachers always receive the student's batch (PaddleSlim's merge_feed=True).
With ONNX models there is no second feed namespace to fill, so merge_feed=False cannot mean anything else and is
logged and ignored. When a teacher names its inputs differently, inputs are matched by position.

Label loss (label_loss_weight > 0 and the batch has a label): cross entropy between the student's class logits and
the label. The logits are the student's first output, or the input of its final Softmax/LogSoftmax (cross entropy
wants logits). Integer labels are class indices (shape of the logits without the class axis); float labels of
the logits' shape are class probabilities. The class axis follows the soft_label rule (1 for rank >= 4, else last).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from autocompress.config.strategies import Distillation, MultiTeacherDistillation
from autocompress.distill.losses import class_axis, fsp_loss, l2_loss, soft_label_loss
from autocompress.distill.nodes import DistillTerm, label_logits_name, parse_terms
from autocompress.errors import ConfigError, DataError
from autocompress.graph.index import GraphIndex

log = logging.getLogger(__name__)

Feeds = dict[str, torch.Tensor]


class DistillOutput(NamedTuple):
    total: torch.Tensor
    #: every loss term's unweighted value (and "label" when a label loss was computed), for logging
    parts: dict[str, float]


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def _check_pair(term: DistillTerm, teacher: list[torch.Tensor], student: list[torch.Tensor]) -> None:
    if term.loss != "fsp":
        if teacher[0].shape != student[0].shape:
            raise ConfigError(
                f"distillation nodes do not match: teacher '{term.teacher_nodes[0]}' has shape {_shape(teacher[0])} "
                f"but student '{term.student_nodes[0]}' has shape {_shape(student[0])}; pick tensors of equal shape"
            )
        return
    for side, (a, b), (name_a, name_b) in (
        ("teacher", teacher, term.teacher_nodes),
        ("student", student, term.student_nodes),
    ):
        if a.dim() < 3 or b.dim() < 3 or a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
            raise ConfigError(
                f"fsp needs two [N, C, H, W] maps of the same batch and spatial size on each side; {side} "
                f"'{name_a}' is {_shape(a)} and '{name_b}' is {_shape(b)}"
            )
    for i in range(2):
        if teacher[i].shape[1] != student[i].shape[1]:
            raise ConfigError(
                f"fsp matrices differ: teacher '{term.teacher_nodes[i]}' has {teacher[i].shape[1]} channels but "
                f"student '{term.student_nodes[i]}' has {student[i].shape[1]}"
            )


def label_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross entropy of class logits against class indices or class probabilities (see module docstring)."""
    logits = logits.float()
    axis = class_axis(logits.dim())
    moved = logits.movedim(axis, 1)
    no_class = _shape(logits)[:axis] + _shape(logits)[axis + 1 :]
    if not label.is_floating_point() and _shape(label) == no_class:
        return F.cross_entropy(moved, label.long())
    if label.is_floating_point() and label.shape == logits.shape:
        return F.cross_entropy(moved, label.float().movedim(axis, 1))
    raise DataError(
        f"label of shape {_shape(label)} ({label.dtype}) does not fit logits of shape {_shape(logits)}: give class "
        f"indices of shape {no_class} or class probabilities of shape {_shape(logits)}"
    )


class Distiller(nn.Module):
    """Runs frozen teachers and the student on a batch and returns the weighted distillation loss."""

    def __init__(
        self,
        student: nn.Module,
        teachers: Sequence[nn.Module],
        terms: Sequence[DistillTerm],
        temperature: float = 1.0,
        label_loss_weight: float = 0.0,
        label_node: str | None = None,
        teacher_feed_maps: Sequence[dict[str, str] | None] | None = None,
    ):
        super().__init__()
        if not terms and not label_loss_weight:
            raise ConfigError("distillation has no loss term and no label loss; nothing to train against")
        self.student = student
        self.teachers = nn.ModuleList(teachers)
        for teacher in self.teachers:
            teacher.requires_grad_(False)
            teacher.eval()
        self.terms = list(terms)
        for term in self.terms:
            if not 0 <= term.teacher_index < len(self.teachers):
                raise ConfigError(f"{term.label} refers to teacher {term.teacher_index}; there are {len(teachers)}")
        self.temperature = temperature
        self.label_loss_weight = label_loss_weight
        self.label_node = label_node
        self.teacher_feed_maps = list(teacher_feed_maps or [None] * len(self.teachers))
        self._teacher_capture = [
            sorted({n for t in self.terms if t.teacher_index == i for n in t.teacher_nodes})
            for i in range(len(self.teachers))
        ]
        student_nodes = {n for t in self.terms for n in t.student_nodes}
        if label_node and label_loss_weight:
            student_nodes.add(label_node)
        self._student_capture = sorted(student_nodes)

    @classmethod
    def from_config(
        cls,
        config: Distillation | MultiTeacherDistillation,
        student: nn.Module,
        student_model: onnx.ModelProto,
        teachers: Sequence[tuple[nn.Module, onnx.ModelProto]],
    ) -> Distiller:
        """Resolve the config's nodes against the ONNX graphs (teacher i of `teachers` is config teacher i)."""
        if not config.merge_feed:
            log.warning("merge_feed=False is ignored: teachers always receive the student's batch")
        multi = isinstance(config, MultiTeacherDistillation)
        if multi and len(teachers) != len(config.teacher_model_dir):
            raise ConfigError(f"{len(config.teacher_model_dir)} teachers are configured but {len(teachers)} were given")
        if not multi and len(teachers) != 1:
            raise ConfigError(f"Distillation uses one teacher; got {len(teachers)}")
        terms: list[DistillTerm] = []
        if multi:
            for i, (_, teacher_model) in enumerate(teachers):
                terms += parse_terms(config.node[i], config.loss[i], config.alpha[i], teacher_model, student_model, i)
        else:
            terms = parse_terms(config.node, config.loss, config.alpha, teachers[0][1], student_model)
        label_weight = 0.0 if multi else config.label_loss_weight
        return cls(
            student,
            [module for module, _ in teachers],
            terms,
            temperature=config.temperature,
            label_loss_weight=label_weight,
            label_node=label_logits_name(student_model) if label_weight else None,
            teacher_feed_maps=[_feed_map(student_model, model, i) for i, (_, model) in enumerate(teachers)],
        )

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        for teacher in self.teachers:
            teacher.eval()
        return self

    def _teacher_outputs(self, feeds: Feeds) -> list[dict[str, torch.Tensor]]:
        outputs = []
        with torch.no_grad():
            for teacher, capture, mapping in zip(self.teachers, self._teacher_capture, self.teacher_feed_maps):
                if not capture:
                    outputs.append({})
                    continue
                teacher_feeds = feeds if mapping is None else {mapping[k]: v for k, v in feeds.items() if k in mapping}
                outputs.append(teacher(teacher_feeds, capture=capture))
        return outputs

    def _term_loss(self, term: DistillTerm, teacher: list[torch.Tensor], student: list[torch.Tensor]) -> torch.Tensor:
        _check_pair(term, teacher, student)
        if term.loss == "l2":
            return l2_loss(teacher[0], student[0])
        if term.loss == "soft_label":
            return soft_label_loss(teacher[0], student[0], self.temperature)
        return fsp_loss(teacher[0], teacher[1], student[0], student[1])

    def forward(self, feeds: Feeds, label: torch.Tensor | None = None) -> DistillOutput:
        student_out = self.student(feeds, capture=self._student_capture)
        teacher_out = self._teacher_outputs(feeds)
        total = torch.zeros((), device=next(iter(student_out.values())).device)
        parts: dict[str, float] = {}
        for term in self.terms:
            t = [teacher_out[term.teacher_index][n] for n in term.teacher_nodes]
            s = [student_out[n] for n in term.student_nodes]
            value = self._term_loss(term, t, s)
            parts[term.label] = float(value.detach())
            total = total + term.alpha * value
        if label is not None and self.label_loss_weight:
            logits = student_out[self.label_node] if self.label_node else next(iter(student_out.values()))
            value = label_loss(logits, torch.as_tensor(label, device=logits.device))
            parts["label"] = float(value.detach())
            total = total + self.label_loss_weight * value
        return DistillOutput(total, parts)


def _feed_map(student: onnx.ModelProto, teacher: onnx.ModelProto, index: int) -> dict[str, str] | None:
    """None when the teacher reads the student's input names, else student name -> teacher name by position."""
    student_inputs = GraphIndex(student).graph_inputs
    teacher_inputs = GraphIndex(teacher).graph_inputs
    if set(teacher_inputs) <= set(student_inputs):
        return None
    if len(teacher_inputs) != len(student_inputs):
        raise ConfigError(
            f"teacher {index} has inputs {teacher_inputs} and the student {student_inputs}; teachers receive the "
            f"student's batch, so their inputs must have the same names or the same count (matched by position)"
        )
    log.info("teacher %d inputs %s matched by position to the student's %s", index, teacher_inputs, student_inputs)
    return dict(zip(student_inputs, teacher_inputs))
