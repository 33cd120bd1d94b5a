"""What a run's arguments leave to the modality and the strategy, filled in, and the checks
that span several flags (those of one flag sit beside it: its range, `__post_init__`).

`resolve_args` is the one place: the parser calls it, and so does the lab for each trial.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tl_hf.config.arguments import TRAINING_DEFAULTS, EarlyStoppingArguments, RunArgs
from tl_hf.errors import UserError
from tl_hf.registry import Settings, settings_of


def default_strategy(modality, model_args) -> str:
    """The strategy a run uses when none is given: the modality's (docs/defaults.md), or llrd
    for `--random_init`, which needs one that trains the backbone from the start."""
    return (
        "llrd" if model_args is not None and model_args.random_init else modality.default_strategy
    )


def default_learning_rate(modality, strategy, options) -> float:
    """The learning rate of `strategy` (a record) when `--learning_rate` is not given."""
    rates = modality.default_learning_rates
    return (
        rates[strategy.name]
        if strategy.name in rates
        else strategy.default_learning_rate(rates, options)
    )


def default_epochs(modality, strategy) -> float:
    """`--num_train_epochs` when not given: the modality's for this strategy, else the shared."""
    return modality.default_epochs.get(strategy.name, TRAINING_DEFAULTS["num_train_epochs"])


def _own(args: RunArgs, flags: type | None) -> Any:
    """The run's instance of a plugin's own flags (its defaults when it was not parsed)."""
    if flags is None:
        return None
    return args.plugins.get(flags.__name__) or flags()


def _shared(part: Any) -> Any:
    return part.shared if isinstance(part, Settings) else part


def options_for(args: RunArgs, strategy, **changes: Any) -> Settings:
    """The settings `strategy` (a record) reads in this run: the shared strategy flags (with
    `changes`) and its own flags as the run parsed them."""
    shared = dataclasses.replace(_shared(args.strategy), strategy=strategy.name, **changes)
    return Settings(shared, _own(args, strategy.flags))


def resolve_args(args: RunArgs) -> RunArgs:
    """Fill in the strategy, learning rate and epochs the user left to the modality and the
    strategy, join each plugin's own flags to its shared ones (`args.data`, `args.strategy`),
    and check combinations. `args.training` is changed in place (it is the run's own copy)."""
    from tl_hf.modalities.base import get_modality
    from tl_hf.strategies.base import get_strategy

    modality = get_modality(args.modality)  # an unknown name lists the known ones
    shared = _shared(args.strategy)
    record = get_strategy(shared.strategy or default_strategy(modality, args.model))
    strategy = Settings(dataclasses.replace(shared, strategy=record.name), _own(args, record.flags))
    data = settings_of(_shared(args.data), None)
    if modality.flags is not None:
        data = Settings(data.shared, _own(args, modality.flags))
    record.check(strategy, args.model)
    if args.model.candidates and "model_name_or_path" in args.explicit:
        raise UserError(
            "give either --model_name_or_path (one checkpoint) or --candidates (several, the "
            "best one is chosen), not both"
        )
    training, explicit = args.training, args.explicit
    if args.output.resume and training.resume_from_checkpoint:
        raise UserError(
            "--resume picks the latest complete checkpoint itself: drop it or "
            "--resume_from_checkpoint"
        )
    if "dataloader_pin_memory" not in explicit and training.device.type == "cpu":
        training.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns
    if "learning_rate" not in explicit:
        training.learning_rate = default_learning_rate(modality, record, strategy)
    shared_epochs = TRAINING_DEFAULTS["num_train_epochs"]
    if "num_train_epochs" not in explicit and training.num_train_epochs in {
        shared_epochs,
        *modality.default_epochs.values(),
    }:  # a default (the embedded runs' own sizes are other values): the strategy's
        training.num_train_epochs = default_epochs(modality, record)
    stopping, shared_patience = args.stopping, EarlyStoppingArguments().early_stopping_patience
    if "early_stopping_patience" not in explicit and stopping.early_stopping_patience in {
        shared_patience,
        *modality.default_patience.values(),
    }:  # on the strategy's own schedule, the patience measured with it (docs/defaults.md)
        own = training.num_train_epochs == default_epochs(modality, record)
        patience = modality.default_patience.get(record.name, shared_patience)
        stopping = dataclasses.replace(
            stopping, early_stopping_patience=patience if own else shared_patience
        )
    check_early_stopping(training, stopping)
    if args.speed.bf16_weights and not training.bf16:
        raise UserError("--bf16_weights needs --bf16 true (it replaces bf16 autocast)")
    return dataclasses.replace(args, data=data, strategy=strategy, stopping=stopping)


def check_early_stopping(training, stopping: EarlyStoppingArguments) -> None:
    """The early-stopping preset needs matching eval/save strategies and best-model loading."""
    if stopping.early_stopping_patience == 0:
        return
    if str(training.eval_strategy.value) == "no":
        raise UserError(
            "early stopping needs evaluations: set --eval_strategy epoch (the default) "
            "or --early_stopping_patience 0"
        )
    if (
        training.save_strategy.value != training.eval_strategy.value
        and training.save_strategy.value != "best"
    ):
        raise UserError(
            f"--save_strategy {training.save_strategy.value} must match --eval_strategy "
            f"{training.eval_strategy.value} so the best checkpoint is on disk"
        )
    if training.eval_strategy.value == "steps" and training.save_steps != training.eval_steps:
        raise UserError("with --eval_strategy steps, --save_steps must equal --eval_steps")
    if not training.load_best_model_at_end:
        raise UserError(
            "early stopping returns the best checkpoint: keep --load_best_model_at_end true "
            "or set --early_stopping_patience 0"
        )
