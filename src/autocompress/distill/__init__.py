"""Distillation: losses (l2, soft_label, fsp), node resolution and automatic choice, single and multi-teacher."""

from autocompress.distill.distiller import Distiller, DistillOutput
from autocompress.distill.nodes import DistillTerm, auto_node, parse_terms

__all__ = ["DistillOutput", "Distiller", "DistillTerm", "auto_node", "parse_terms"]
