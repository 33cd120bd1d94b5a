"""`gradual`: gradual unfreezing (Howard & Ruder 2018, ULMFiT).

The head (depth L + 1: head, final norm, pooler) trains first; every `--unfreeze_every` epochs
one more block from the top joins, down to the embeddings, each group at its layerwise (LLRD)
learning rate.

How a block is held back, and why not with `requires_grad`: every group is in the optimizer
from the start and every parameter keeps `requires_grad=True`. DDP (with the preset's
`find_unused_parameters=False`) decides at wrapping time which parameters it reduces;
switching `requires_grad` on later would leave the newly unfrozen ones out of the gradient
reduction (ranks drift apart) and switching it off would make DDP wait for gradients that never
come. So `GradualUnfreezing`, a callback, holds a group back by:
- zeroing its gradients as they are computed (a tensor hook: identical on every rank, so the
  all-reduce stays in step, and gradient clipping measures the trained groups only);
- dropping them (`grad = None`) before the optimizer step: AdamW then skips those parameters
  entirely (no moment estimates built from zeros, no weight decay);
- showing its learning rate as 0 (what the monitor records, so the learning-rate panel of the
  curves shows each group switching on; the scheduler's own rates are untouched).
The backward pass still runs through locked blocks (the cost of keeping DDP's bookkeeping fixed),
and a locked block's BatchNorm layers (convolutional backbones) still update their running
statistics: only the optimizer is held back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tl_hf.strategies.base import Strategy, refuse_trainable_layers, register_strategy
from tl_hf.strategies.groups import layerwise_groups


def unlocked_from(epoch: int, top: int, every: int) -> int:
    """The lowest depth that trains in (0-based) `epoch`: the top first, one block lower every
    `every` epochs."""
    return max(0, top - epoch // every)


def _lock_below_depth(callback, state, optimizer, scheduler) -> None:
    """Lock the groups below the unfreezing depth of `state.epoch`: their parameters join
    `callback.locked` (a gradient hook on every parameter, added once, zeroes theirs) and their
    learning rate shows 0; an unlocked group shows the scheduler's rate."""
    if optimizer is None:
        return
    groups = optimizer.param_groups
    top = max(g.get("depth", 0) for g in groups)
    epoch = math.floor((state.epoch or 0) + 1e-6)
    callback.lowest = unlocked_from(epoch, top, callback.every)
    callback.locked = {
        id(p) for g in groups if g.get("depth", top) < callback.lowest for p in g["params"]
    }
    for group in groups:
        for param in group["params"]:
            if id(param) not in callback.hooked:
                callback.hooked.add(id(param))
                param.register_hook(_zero_when_locked(callback, param))
    # the scheduler's rates (what it last computed, not what was written here)
    rates = scheduler.get_last_lr() if scheduler is not None else None
    for i, group in enumerate(groups):
        if group.get("depth", top) < callback.lowest:
            group["lr"] = 0.0
        elif rates is not None:
            group["lr"] = rates[i]  # a group switched on trains from its first step


def _zero_when_locked(callback, param):
    """The gradient hook of `param`: zeros while `callback` holds it back."""
    import torch

    key = id(param)

    def zero_when_locked(grad):
        return torch.zeros_like(grad) if key in callback.locked else grad

    return zero_when_locked


def _callback_class():
    from transformers import TrainerCallback

    class GradualUnfreezing(TrainerCallback):
        """Holds back the optimizer groups below the current unfreezing depth (see module)."""

        def __init__(self, every: int):
            self.every = every
            self.locked: set[int] = set()  # ids of the parameters held back now
            self.hooked: set[int] = set()
            self.lowest: int | None = None  # lowest unlocked depth (for tests and logs)

        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            _lock_below_depth(self, state, optimizer, lr_scheduler)

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            if optimizer is None:
                return
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if id(param) in self.locked:
                        param.grad = None

        def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            # after the scheduler's step (which rewrote every group's lr), before the monitor
            # records the rates: locked groups show 0
            _lock_below_depth(self, state, optimizer, lr_scheduler)

        def on_train_end(self, args, state, control, **kwargs):
            self.locked = set()  # the hooks stay on the parameters, inert

    return GradualUnfreezing


def build_gradual_unfreezing(every: int):
    """The `TrainerCallback` that unfreezes one more group depth every `every` epochs."""
    return _callback_class()(every)


@dataclass
class GradualArguments:
    """`--strategy gradual`'s own flags."""

    unfreeze_every: int = field(
        default=1,
        metadata={
            "range": "[1, inf)",
            "help": "gradual: epochs between unfreezing one more block from the top.",
        },
    )


def _describe(settings: Mapping[str, Any]) -> str:
    return (
        f"one more block from the top every {settings.get('unfreeze_every')} epoch(s), "
        f"LLRD decay {settings.get('llrd_decay')}"
    )


GRADUAL = register_strategy(
    Strategy(
        name="gradual",
        description="the head first, then one more block from the top every --unfreeze_every "
        "epochs, at layerwise learning rates",
        param_groups=layerwise_groups,
        callbacks=lambda options: [build_gradual_unfreezing(options.unfreeze_every)],
        flags=GradualArguments,
        default_learning_rate=lambda rates, options: rates.get("llrd", 2 * rates["full"]),
        describe=_describe,
        check=refuse_trainable_layers,
    )
)
