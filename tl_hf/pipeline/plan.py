"""Step 1 of the flow: what a run will do, resolved from its arguments before anything heavy is
loaded (`plan_run`), and the output folder taken (`open_output_step`). The `Modality` and
`Strategy` records are looked up here, once; every later step takes them from the `Plan`."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from tl_hf.config import RunArgs
from tl_hf.errors import UserError


@dataclass(frozen=True)
class Plan:
    """What a run will do, derived from its arguments before anything heavy is loaded, and
    refined once by the settings its training split chose (`with_data_rules`); never changed
    otherwise (the Trainer gets its own copy of `training_args`, `trainer_arguments`).

    Attributes:
        args: the run's arguments, as resolved (`tl_hf.config.resolve_args`).
        modality, strategy: the records (`tl_hf.modality.Modality`, `tl_hf.strategy.Strategy`).
        model_path: the checkpoint's local folder or Hub id (the embedded default's folder).
        checkpoint_config: its `config.json`, read once.
        display_name: how the console and report name the checkpoint (no local paths).
        specs, copies, on_the_fly: the augmentations; stored copies per example (map mode).
        batch_level: whether some of them apply to collated batches (mixup, cutmix, SpecAugment).
        cache: (whether the backbone's features are cached, why not when they are not).
        tta_views: `--tta`'s (views per evaluated image, whether mirrors are among them), or
            None when off (`tl_hf.augment.tta`).
        hub: the Hub settings, taken out of the Trainer's arguments (pushed once, at the end).
        training_args: `TrainingArguments` for the Trainer, without the Hub settings.
    """

    args: RunArgs
    modality: Any
    strategy: Any
    model_path: str
    checkpoint_config: Any
    display_name: str
    specs: tuple
    copies: int
    on_the_fly: bool
    batch_level: bool
    cache: tuple[bool, str]
    hub: Any
    training_args: Any
    tta_views: tuple[int, bool] | None = None

    @property
    def options(self):
        """The strategy's settings (`StrategyArguments` joined with its own flags)."""
        return self.args.strategy


def _check_pooling(pooling: str, checkpoint_config) -> None:
    """`--pooling mean` on a family that cannot express it is refused before anything loads."""
    from tl_hf.model.pooling import config_refuses_mean

    if pooling != "mean" or not hasattr(checkpoint_config, "to_dict"):
        return
    kind = getattr(checkpoint_config, "model_type", None) or "this"
    refused = config_refuses_mean(checkpoint_config.to_dict(), f"the {kind} family")
    if refused:
        raise UserError(
            f"--pooling mean: {refused}; use --pooling first (the stock class's first-token path)"
        )


def _augmentation(modality, strategy, args: RunArgs) -> dict[str, Any]:
    """The plan's augmentation fields (specs, copies, on_the_fly, batch_level) and whether
    features are cached (`cache`; an impossible `--cache_features true` fails here)."""
    from tl_hf.augment.base import batch_level, feature_level, resolve_augment_specs
    from tl_hf.training.features import cache_plan

    specs = resolve_augment_specs(modality, args.augment, args.explicit)
    on_features = feature_level(specs)
    inputs = len(specs) > len(on_features)  # some augment the inputs themselves
    on_the_fly = inputs and args.augment.augment_mode == "on_the_fly"
    copies = args.augment.augment_copies if inputs else 0
    if inputs and not on_the_fly and copies == 0:
        copies = 1  # --augment given in map mode without a count: one augmented copy
    batched = bool(batch_level(modality, specs))
    if args.augment.augment_filter != "none" and (on_the_fly or not specs or batched):
        raise UserError(
            f"--augment_filter {args.augment.augment_filter} checks stored copies of each "
            "example: give --augment with --augment_copies K (map mode, no mixup, cutmix or "
            "SpecAugment)"
        )
    explicit = "cache_features" in args.explicit
    cache = cache_plan(strategy, args.strategy, explicit, on_the_fly, batched)
    heads = strategy.head_on_frozen_features(args.strategy) and args.strategy.cache_features
    if on_features and not heads or on_features and (on_the_fly or batched):
        raise UserError(
            "--augment feature_mixup mixes the stored features a head on a frozen backbone "
            "trains on: use it with --strategy frozen or lp_ft (its probe), the feature cache "
            "on, and no on-the-fly or batch-level augmentation beside it (for a backbone that "
            "trains, --augment mixup mixes the inputs)"
        )
    return dict(
        specs=tuple(specs), copies=copies, on_the_fly=on_the_fly, batch_level=batched, cache=cache
    )


def with_data_rules(plan: Plan, rules) -> Plan:
    """The plan with the settings the training split chose (`DataRule`s: the image size, the
    small-data augmentation), its augmentation and feature cache resolved again."""
    from tl_hf.modalities.base import with_rules

    if not rules:
        return plan
    args = with_rules(plan.args, rules)
    return dataclasses.replace(plan, args=args, **_augmentation(plan.modality, plan.strategy, args))


def plan_run(args: RunArgs) -> Plan:
    """Check the checkpoint, the augmentations, the feature-cache request and the Hub settings,
    and look up the records; nothing heavy is loaded."""
    from tl_hf.augment.tta import test_time_views
    from tl_hf.modalities.base import get_modality
    from tl_hf.model.checkpoint import check_checkpoint, load_checkpoint_config
    from tl_hf.output.hub import check_push_ready, detach_hub_settings
    from tl_hf.report.share import model_display_name
    from tl_hf.strategies.base import get_strategy

    modality, strategy = get_modality(args.modality), get_strategy(args.strategy.strategy)
    from tl_hf.embedded.ladder import ladder_folder

    name = args.model.model_name_or_path
    model_path = (ladder_folder(name, modality.name) or name) if name else modality.default_model()
    if not model_path:
        raise UserError(
            f"the {modality.name} modality has no embedded checkpoint: pass --model_name_or_path"
        )
    checkpoint_config = load_checkpoint_config(model_path, args.model)
    check_checkpoint(model_path, checkpoint_config, modality.auto_model, modality.name)
    _check_pooling(args.model.pooling, checkpoint_config)
    augmentation = _augmentation(modality, strategy, args)
    views = test_time_views(modality, args.augment.tta, args.augment.augment)
    # We push once at the end (best model, card, report): the Trainer must neither push every
    # checkpoint nor pickle the token into training_args.bin, so it gets a copy without them.
    training_args = copy.copy(args.training)
    training_args.resume_from_checkpoint = None  # where a resumed run starts: open_output_step
    # the early-stopping patience counter and best-checkpoint pointer come back with it
    training_args.restore_callback_states_from_checkpoint = True
    hub = detach_hub_settings(training_args)
    if hub.push:
        hub = dataclasses.replace(hub, token=check_push_ready(hub.repo_id, hub.token))
    return Plan(
        args=args,
        modality=modality,
        strategy=strategy,
        model_path=model_path,
        checkpoint_config=checkpoint_config,
        display_name=model_display_name(args.model.model_name_or_path, args.modality),
        **augmentation,
        hub=hub,
        training_args=training_args,
        tta_views=views if views[0] else None,
    )


def trainer_arguments(plan: Plan, **changes: Any):
    """A new copy of the plan's `TrainingArguments` for one Trainer, with `changes` (checked
    again by `TrainingArguments`, as any other combination)."""
    if changes:
        return dataclasses.replace(plan.training_args, **changes)
    return copy.copy(plan.training_args)


@dataclass
class OutputStep:
    """The output folder, taken (`tl_hf.output.ownership.OutputFolder`; None on other ranks),
    and the checkpoint a resumed run continues from (None: from the start)."""

    folder: Any
    resume_from: str | None

    def release(self) -> None:
        if self.folder is not None:
            self.folder.release()


def open_output_step(plan: Plan, log) -> OutputStep:
    """Take the output folder (the main process holds its lock until the run ends; the user's
    files in it are checked) and find the checkpoint a resumed run continues from."""
    from tl_hf.output.folder import open_run_folder

    args = plan.args
    folder, resume_from = open_run_folder(
        args.training, args.output, "output_dir" in args.explicit, log
    )
    if args.output.resume and resume_from is None:
        log(f"--resume: no complete checkpoint in {args.training.output_dir}, starting afresh")
    return OutputStep(folder, resume_from)
