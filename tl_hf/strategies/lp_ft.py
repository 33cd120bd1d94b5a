"""`lp_ft`: linear probe, then fine-tune (Kumar et al. 2022, "Fine-Tuning can Distort
Pretrained Features and Underperform Out-of-Distribution").

Phase 1 trains the new head alone on the frozen backbone (`frozen`, features cached when the
run allows it, so it costs about one pass of the backbone) for `--lp_ft_probe_epochs` epochs at
the modality's `frozen` learning rate. Phase 2 fine-tunes the whole model from that head with
`full` or `llrd` groups (`--lp_ft_then`) at `--learning_rate`, with the early-stopping preset.
A fine-tune that starts from a trained head sends small gradients into the backbone at first,
instead of the large, noisy ones a random head sends: the pretrained features are distorted less.

The probe phase's curves are drawn before epoch 0 of `training_curves.png`
(`training_history.json` keeps them under `phases`); epochs, the best epoch and early stopping
count the fine-tuning phase only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.strategies.base import Strategy, get_strategy, refuse_trainable_layers, register_strategy

THEN = ("full", "llrd")
PHASE_NAME = "linear probe"


@dataclass
class LpFtArguments:
    """`--strategy lp_ft`'s own flags."""

    lp_ft_then: str = field(
        default="llrd",
        metadata={
            "help": "lp_ft: the fine-tuning phase's strategy, full or llrd.",
            "choices": list(THEN),
        },
    )
    lp_ft_probe_epochs: int = field(
        default=5,
        metadata={
            "range": "[1, inf)",
            "hint": "try 5 (or --strategy full to skip the probe)",
            "help": "lp_ft: epochs of the linear probe (the head on cached frozen features).",
        },
    )


def _then(options):
    """The fine-tuning phase's strategy and the options it reads."""
    return get_strategy(options.lp_ft_then), options.replace(strategy=options.lp_ft_then)


def _prepare(model, context) -> None:
    options = context.options
    if context.train_phase is None:
        raise RuntimeError(
            "lp_ft trains a probe phase before the main training: run it through tl_hf.pipeline"
        )
    rates = context.learning_rates
    probe_lr = rates["frozen"] if "frozen" in rates else 10 * rates["full"]
    context.log(
        f"lp_ft: linear probe for {options.lp_ft_probe_epochs} epoch(s) at learning rate "
        f"{probe_lr:g}, then {options.lp_ft_then} fine-tuning"
    )
    history = context.train_phase(model, "frozen", options.lp_ft_probe_epochs, probe_lr)
    context.phases.append({**history, "name": PHASE_NAME})


def _param_groups(model, options, learning_rate, weight_decay, reference_model=None):
    then, then_options = _then(options)
    return then.param_groups(model, then_options, learning_rate, weight_decay, reference_model)


def _default_lr(rates: Mapping[str, float], options) -> float:
    then, then_options = _then(options)
    return (
        rates[then.name] if then.name in rates else then.default_learning_rate(rates, then_options)
    )


def _check(options, model_args) -> None:
    if options.lp_ft_then not in THEN:
        raise UserError(
            f"--lp_ft_then must be one of {', '.join(THEN)}, got {options.lp_ft_then!r}"
        )
    refuse_trainable_layers(options)
    if model_args is not None and model_args.random_init:
        raise UserError(
            "--random_init with --strategy lp_ft would probe random features: use --strategy full"
        )


def _describe(settings: Mapping[str, Any]) -> str:
    then = settings.get("lp_ft_then")
    return (
        f"linear probe for {settings.get('lp_ft_probe_epochs')} epoch(s) on the frozen backbone, "
        f"then {then} fine-tuning"
        + (f" (LLRD decay {settings.get('llrd_decay')})" if then == "llrd" else "")
    )


LP_FT = register_strategy(
    Strategy(
        name="lp_ft",
        description="linear probe (the head on frozen features), then fine-tune everything "
        "from that head with full or llrd groups",
        prepare_model=_prepare,
        param_groups=_param_groups,
        can_cache_features=lambda options: (
            False,
            "--strategy lp_ft fine-tunes the backbone after its probe (the probe phase caches "
            "features by itself)",
        ),
        default_learning_rate=_default_lr,
        describe=_describe,
        check=_check,
        head_on_frozen_features=lambda options: True,
        flags=LpFtArguments,
    )
)
