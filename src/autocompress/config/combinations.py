"""Which strategy keys may be combined, and in which order their stages run.

The seed's eight combinations, QuantPost alone, and a prune/sparse stage followed by quantization
(quantization always last). A training strategy given without Distillation distils from the original model
with default settings, as ACT does internally.
"""

from __future__ import annotations

from autocompress.errors import ConfigError

PRUNE_KEYS = ("ChannelPrune", "ASPPrune", "TransformerPrune", "UnstructurePrune")
QUANT_KEYS = ("QuantAware", "QuantPost")
DISTILL_KEYS = ("Distillation", "MultiTeacherDistillation")

#: Stage order: structure changes first, then training-only distillation, quantization last.
STAGE_ORDER = (*PRUNE_KEYS, "Distillation", "MultiTeacherDistillation", "QuantAware", "QuantPost")

SEED_COMBINATIONS = [
    {"QuantPost", "HyperParameterOptimization"},
    {"QuantAware", "Distillation"},
    {"ChannelPrune", "Distillation"},
    {"ASPPrune", "Distillation"},
    {"TransformerPrune", "Distillation"},
    {"UnstructurePrune", "Distillation"},
    {"Distillation"},
    {"MultiTeacherDistillation"},
]


def check_combination(keys: set[str]) -> None:
    """Raise ConfigError naming the supported combinations if `keys` is not one of them."""
    if not keys:
        return
    prunes = keys & set(PRUNE_KEYS)
    quants = keys & set(QUANT_KEYS)
    distills = keys & set(DISTILL_KEYS)
    problems = []
    if len(prunes) > 1:
        problems.append(f"at most one prune/sparse strategy per run, got {sorted(prunes)}")
    if len(quants) > 1:
        problems.append("QuantAware and QuantPost both quantize; choose one")
    if len(distills) > 1:
        problems.append("Distillation and MultiTeacherDistillation both distil; choose one")
    if "HyperParameterOptimization" in keys and "QuantPost" not in keys:
        problems.append("HyperParameterOptimization searches QuantPost settings; add a QuantPost section")
    if "MultiTeacherDistillation" in keys and (prunes or quants):
        problems.append("MultiTeacherDistillation runs alone")
    if problems:
        allowed = ["+".join(sorted(c)) for c in SEED_COMBINATIONS] + [
            "QuantPost",
            "<one of " + "/".join(PRUNE_KEYS) + ">[+Distillation]+<QuantAware|QuantPost[+HyperParameterOptimization]>",
        ]
        raise ConfigError(
            f"unsupported strategy combination {sorted(keys)}: " + "; ".join(problems) + f". Supported: {allowed}"
        )


def ordered_stage_keys(keys: set[str]) -> list[str]:
    """Strategy keys in execution order (HyperParameterOptimization belongs to the QuantPost stage)."""
    return [k for k in STAGE_ORDER if k in keys]
