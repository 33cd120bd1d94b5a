"""Optimizer groups, built by pure functions from what the model declares (its depth table,
`tl_hf.model.depth`): one group per (depth, decay / no decay), each with its learning rate, and
their description (`param_groups.json`, the printed table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tl_hf.model.depth import no_decay_names, num_blocks, parameter_depths, strip_wrappers


def build_depth_groups(
    model,
    learning_rate: float,
    weight_decay: float,
    lr_at_depth: Callable[[int, int], float] | None = None,
    reference_model=None,
) -> list[dict[str, Any]]:
    """Optimizer groups, one per (depth, decay / no decay), trainable parameters only, in depth
    order; `lr_at_depth(depth, top)` gives a group's learning rate (default: `learning_rate`).

    `model` supplies the parameter objects (it may be wrapped by DDP/FSDP);
    `reference_model` (default: `model`) the config and names used to place them.
    Each group has `params`, `lr`, `weight_decay`, `name`, `depth`, `num_params`.
    """
    reference = reference_model if reference_model is not None else model
    depths = parameter_depths(reference)
    no_decay = no_decay_names(reference)
    top = num_blocks(reference) + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = strip_wrappers(name)
        depth = depths[name]
        decays = name not in no_decay
        lr = lr_at_depth(depth, top) if lr_at_depth is not None else learning_rate
        group = groups.setdefault(
            (depth, decays),
            {
                "name": f"depth_{depth:02d}" + ("" if decays else "_no_decay"),
                "depth": depth,
                "lr": lr,
                "weight_decay": weight_decay if decays else 0.0,
                "params": [],
                "num_params": 0,
            },
        )
        group["params"].append(param)
        group["num_params"] += param.numel()
    return [groups[key] for key in sorted(groups)]


def uniform_groups(model, options, learning_rate, weight_decay, reference_model=None):
    """Every trainable parameter at `learning_rate` (groups by depth, for the report)."""
    return build_depth_groups(model, learning_rate, weight_decay, None, reference_model)


def layerwise_groups(model, options, learning_rate, weight_decay, reference_model=None):
    """LLRD: a group at depth d trains at `learning_rate * llrd_decay ** (L + 1 - d)`."""
    decay = options.llrd_decay
    return build_depth_groups(
        model,
        learning_rate,
        weight_decay,
        lambda depth, top: learning_rate * decay ** (top - depth),
        reference_model,
    )


def describe_param_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups as JSON-able rows (what `param_groups.json` holds)."""
    return [
        {k: g[k] for k in ("name", "depth", "num_params", "lr", "weight_decay")} for g in groups
    ]


def format_param_groups(rows: list[dict[str, Any]], total_params: int) -> str:
    """A printable table of the groups."""
    lines = [f"{'group':<20} {'depth':>5} {'params':>12} {'lr':>10} {'wd':>6}"]
    for r in rows:
        lines.append(
            f"{r['name']:<20} {r['depth']:>5} {r['num_params']:>12,} {r['lr']:>10.3g} {r['weight_decay']:>6.3g}"
        )
    trained = sum(r["num_params"] for r in rows)
    lines.append(
        f"trainable {trained:,} of {total_params:,} parameters ({100 * trained / max(total_params, 1):.1f}%)"
    )
    return "\n".join(lines)
