"""The three classic strategies: `frozen` (feature extraction), `full` and `llrd`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tl_hf.errors import UserError
from tl_hf.model.depth import head_parameter_names, num_blocks, parameter_depths
from tl_hf.strategies.base import Strategy, register_strategy
from tl_hf.strategies.groups import layerwise_groups


def frozen_trainable(model, options) -> set[str]:
    """The head, plus the top K blocks and the final norm/pooler above them
    (`--trainable_layers K`)."""
    heads = head_parameter_names(model)
    k = options.trainable_layers
    if k == 0:
        return heads
    top = num_blocks(model) + 1
    if k > top - 1:
        raise UserError(
            f"--trainable_layers {k} exceeds the {top - 1} blocks of {type(model).__name__}"
        )
    return heads | {n for n, d in parameter_depths(model).items() if d >= top - k}


def _frozen_can_cache(options) -> tuple[bool, str]:
    if options.trainable_layers:
        return False, (
            "it needs --strategy frozen with --trainable_layers 0 (the backbone must not train); "
            f"this run is --strategy frozen --trainable_layers {options.trainable_layers}"
        )
    return True, ""


def _frozen_check(options, model_args) -> None:
    if model_args is not None and model_args.random_init:
        raise UserError(
            "--random_init with --strategy frozen would train a head on random features: "
            "use --strategy full"
        )


def _frozen_detail(settings: Mapping[str, Any]) -> str:
    k = settings.get("trainable_layers")
    return f"top {k} layers trainable" if k else ""


def _frozen_card(settings: Mapping[str, Any], results: Mapping[str, Any], lr_by_depth) -> str:
    from tl_hf.report.folder import fmt

    layers = settings.get("trainable_layers") or 0
    text = (
        "The pretrained backbone was **frozen**: only the new classification head trained"
        + (f", together with the top {layers} backbone layers" if layers else "")
        + f", at learning rate {fmt(settings.get('learning_rate'))}."
    )
    if results.get("cached_features"):
        text += (
            " The frozen backbone ran once over every split and the head trained on its "
            "stored outputs."
        )
    return text


def _full_card(settings: Mapping[str, Any], results: Mapping[str, Any], lr_by_depth) -> str:
    from tl_hf.report.folder import fmt

    return (
        f"**Every layer trained** at the same learning rate, {fmt(settings.get('learning_rate'))}."
    )


def _llrd_card(settings: Mapping[str, Any], results: Mapping[str, Any], lr_by_depth) -> str:
    from tl_hf.report.folder import fmt

    text = (
        "**Every layer trained**, with layer-wise learning-rate decay: the head at "
        f"{fmt(settings.get('learning_rate'))}, each layer below it at "
        f"{settings.get('llrd_decay')} times the rate of the layer above"
    )
    if lr_by_depth:
        text += f", down to {fmt(lr_by_depth[0][1])} for the embeddings (depth 0)"
    return text + "."


FROZEN = register_strategy(
    Strategy(
        name="frozen",
        description="backbone frozen, the new head trains (with --trainable_layers K, the top "
        "K blocks too)",
        trainable=frozen_trainable,
        can_cache_features=_frozen_can_cache,
        default_learning_rate=lambda rates, options: 10 * rates["full"],
        describe=_frozen_detail,
        check=_frozen_check,
        trains_backbone=False,
        head_on_frozen_features=lambda options: not options.trainable_layers,
        card_text=_frozen_card,
    )
)

FULL = register_strategy(
    Strategy(name="full", description="every parameter at --learning_rate", card_text=_full_card)
)

LLRD = register_strategy(
    Strategy(
        name="llrd",
        description="layerwise learning-rate decay: lr * llrd_decay ** (L + 1 - depth)",
        param_groups=layerwise_groups,
        default_learning_rate=lambda rates, options: 2 * rates["full"],
        describe=lambda settings: f"LLRD decay {settings.get('llrd_decay')}",
        card_text=_llrd_card,
    )
)
