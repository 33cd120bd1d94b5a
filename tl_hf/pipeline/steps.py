"""Steps 2 to 6 of the flow, one function each, each returning one thing:

    data (load, augment, preprocess) -> model (checkpoint + new head, pooling) -> strategy
    (freezing, groups) -> features (the frozen backbone's output, cached) -> output folder

Every step takes the `Plan` (the resolved records and arguments); none looks a record up again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tl_hf.console import say
from tl_hf.errors import UserError
from tl_hf.pipeline.plan import Plan


@dataclass
class Prepared:
    """The data after loading, augmentation and preprocessing."""

    features: Any  # DatasetDict of model inputs
    label_names: list[str]
    processor: Any
    augmenter: Any
    originals: Any  # the training split before augmentation (previews)
    keep_raw_columns: bool  # transforms read the raw columns: the Trainer must not drop them
    rules: tuple = ()  # settings chosen from the data (`tl_hf.modalities.base.DataRule`)


@dataclass
class Features:
    """What the Trainer trains on: the cached features (`cache`, None when the backbone runs
    at every step), the splits and their collator."""

    cache: Any
    splits: Any
    collator: Any


def select_step(args, dataset=None):
    """Step 0, with `--candidates`: rank the candidates on frozen features of the data
    (`tl_hf.select`) and run on the chosen one. Returns (the arguments with the chosen
    checkpoint as `model_name_or_path`, the `Selection`)."""
    import dataclasses

    from tl_hf.select import select_with_args

    selection = select_with_args(args, dataset)
    say(f"training the chosen checkpoint: {selection.chosen}")
    model = dataclasses.replace(args.model, model_name_or_path=selection.chosen_path)
    return dataclasses.replace(args, model=model), selection


def write_selection_step(selection, plan: Plan) -> None:
    """`selection.json` in the output folder (main process), which `run_config.yaml` and the
    card read."""
    from tl_hf.select.api import write_selection

    if selection is not None and plan.args.training.process_index == 0:
        write_selection(selection, plan.args.training.output_dir)


def prepare_data(plan: Plan, dataset=None) -> Prepared:
    """Steps 2-4: load and validate the data, add augmented copies (map mode) or the
    on-the-fly transform, and preprocess every split."""
    from tl_hf.augment.base import (
        OnTheFly,
        apply_augment_copies,
        build_augmenter,
        small_data_rule,
    )
    from tl_hf.console import phase
    from tl_hf.data.load import label_names, load_classification_data
    from tl_hf.modalities.base import data_processor
    from tl_hf.pipeline.plan import with_data_rules

    args, modality = plan.args, plan.modality
    training, num_proc = args.training, args.data.preprocessing_num_workers
    with training.main_process_first(desc="dataset preparation"):
        # bad data is found while loading: the phase's bar starts after that, one step done
        dsd = load_classification_data(
            args.data, modality, training.seed, dataset, args.model.cache_dir
        )
        with phase("data", 2, "step", initial=1) as bar:
            processor, rules = data_processor(
                modality, plan.model_path, args, plan.checkpoint_config, dsd["train"]
            )
            rules += tuple(small_data_rule(modality, plan.strategy, args, dsd["train"]))
            plan = with_data_rules(plan, rules)  # the flow refines its plan the same way
            args, specs = plan.args, list(plan.specs)
            augmenter = None
            if specs:
                context = modality.augment_context(processor, args)
                augmenter = build_augmenter(modality, specs, context)
            originals = dsd["train"]
            if augmenter is not None and not plan.on_the_fly:  # stored copies: one more step
                bar.total += 1
                bar.set_postfix_str("augment")
                dsd["train"] = apply_augment_copies(
                    dsd["train"], augmenter, specs, plan.copies, training.seed, num_proc
                )
                bar.update(1)
                if args.augment.augment_filter == "probe":
                    dsd["train"] = _filtered_copies(plan, originals, dsd["train"])
            skip = ("train",) if plan.on_the_fly else ()
            bar.set_postfix_str("preprocess")
            features = modality.preprocess(dsd, processor, args.data, num_proc, skip)
            bar.update(1)
        if plan.on_the_fly:
            # the training split is preprocessed per batch, after a fresh augmentation every epoch
            preprocess = modality.make_preprocess(processor, args.data, True)
            features["train"] = dsd["train"].with_transform(
                OnTheFly(augmenter, preprocess, training.seed, training.process_index)
            )
    names = label_names(dsd)
    _say_data(plan, features, names, rules)
    keep_raw = plan.on_the_fly or modality.preprocess_on_access
    return Prepared(features, names, processor, augmenter, originals, keep_raw, rules)


def _say_data(plan: Plan, features, names, rules) -> None:
    """The data step's lines: rows per split, classes, the rules taken from the data and
    the augmentation."""
    rows = ", ".join(f"{k} {len(v)}" for k, v in features.items())
    say(f"data: {rows} rows, {len(names)} classes: {', '.join(names)}")
    for rule in rules:
        say(rule.line)
    if plan.specs:
        how = (
            "(on the fly, new draws every epoch)"
            if plan.on_the_fly
            else f"({plan.copies} stored copies per example)"
            if plan.copies
            else "(on the stored features of every training batch)"
        )
        say(f"augmentation: {', '.join(map(str, plan.specs))} {how}")


def _filtered_copies(plan: Plan, originals, stored):
    """The stored copies a probe on the originals' frozen features still gives their label
    (`--augment_filter probe`), with a line saying how many it dropped."""
    from tl_hf.augment.consistency import consistent_copies
    from tl_hf.config.resolve import options_for
    from tl_hf.strategies.base import get_strategy

    options = options_for(
        plan.args, get_strategy("frozen"), trainable_layers=0, cache_features=True
    )
    seed = plan.args.training.seed
    kept, dropped = consistent_copies(plan, originals, stored, seed, options)
    total = len(originals) * plan.copies
    say(
        f"augmentation filter: kept {total - dropped} of {total} augmented "
        f"copies; a probe on the originals' frozen features gave {dropped} "
        "another label"
    )
    return kept


def batch_augment_step(plan: Plan, data: Prepared):
    """The batch-level augmentation of this run (mixup, cutmix, SpecAugment on the inputs;
    `feature_mixup` on cached features, which the plan never combines with them), or None."""
    from tl_hf.augment.base import FeatureMixup, feature_level
    from tl_hf.training.features import COLUMN_PREFIX

    seed = plan.args.training.seed
    on_features = feature_level(list(plan.specs))
    if on_features:
        return FeatureMixup(on_features[0], len(data.label_names), seed, COLUMN_PREFIX)
    if not plan.batch_level:
        return None
    return plan.modality.build_batch_augment(list(plan.specs), len(data.label_names), seed)


def load_model_step(plan: Plan, data: Prepared):
    """Step 5: the checkpoint with a new head for the data's labels, adapted to the modality."""
    from tl_hf.model.checkpoint import build_model

    args = plan.args
    model = build_model(
        plan.modality.auto_model,
        plan.model_path,
        args.model,
        data.label_names,
        plan.checkpoint_config,
        verbose=args.report.verbose,
        display_name=plan.display_name,
    )
    plan.modality.adapt_model(model, data.processor)
    return model


def pooling_step(model, plan: Plan) -> str:
    """Step 5b: `--pooling` (`tl_hf.model.pooling`): the checkpoint's declared mean pooling as
    an appended block where it applies. Returns what the head reads (`first` or `mean`)."""
    from tl_hf.model.pooling import resolve_pooling

    frozen_head = plan.strategy.head_on_frozen_features(plan.options)
    pooling, note = resolve_pooling(model, plan.model_path, plan.args.model.pooling, frozen_head)
    if note:
        say(f"pooling: {note}")
    return pooling


def apply_strategy_step(model, plan: Plan) -> list[dict[str, Any]]:
    """Step 6: freeze what the strategy keeps fixed and describe the optimizer's groups."""
    from tl_hf.strategies.base import (
        apply_freeze_feature_encoder,
        apply_strategy,
        build_param_groups,
    )
    from tl_hf.strategies.groups import describe_param_groups, format_param_groups

    options, training, record = plan.options, plan.args.training, plan.strategy
    apply_strategy(model, record, options=options)
    if options.freeze_feature_encoder:
        apply_freeze_feature_encoder(model)
    groups = describe_param_groups(
        build_param_groups(
            model, record, training.learning_rate, training.weight_decay, options=options
        )
    )
    detail = record.describe(options.as_dict())
    lr = training.learning_rate
    source = "" if "learning_rate" in plan.args.explicit else " (the strategy's default)"
    table = format_param_groups(groups, sum(p.numel() for p in model.parameters()))
    say(
        f"strategy {record.name}{f' ({detail})' if detail else ''}, learning rate {lr:g}{source}"
        f"\n{table}"
    )
    return groups


def cache_features_step(
    model, plan: Plan, data: Prepared, strategy=None, options=None, batch_augment=None
) -> Features:
    """Step 6b: with a frozen backbone, run it once over every split and train the head on its
    stored output (`strategy`/`options`: a phase's, default the run's; not with batch-level
    augmentation, which changes every batch's inputs)."""
    from tl_hf.model.depth import head_parameter_names
    from tl_hf.training.features import (
        CannotCache,
        build_feature_cache,
        cache_plan,
        feature_collator,
    )

    strategy, options = strategy or plan.strategy, options or plan.options
    collator = plan.modality.build_collator(data.processor)
    if strategy is plan.strategy:
        use_cache, reason = plan.cache
    else:  # a phase before the main training (LP-FT's probe) under another strategy
        use_cache, reason = cache_plan(strategy, options, False, plan.on_the_fly, plan.batch_level)
    if use_cache:
        from tl_hf.console import phase

        # the features phase's one bar: rows through the frozen backbone, every split
        rows = sum(len(split) for split in data.features.values())
        try:
            with phase("features", rows, "row") as bar:
                cache = build_feature_cache(
                    model,
                    data.features,
                    collator,
                    head_parameter_names(model),
                    plan.args.training,
                    log=say,
                    on_rows=bar.update,
                    views=plan.tta_views,
                )
            return Features(cache, cache.features, feature_collator)
        except CannotCache as err:
            reason = str(err)
    if not strategy.trains_backbone:
        from tl_hf.augment.base import feature_level

        if feature_level(list(plan.specs)):
            raise UserError(
                f"--augment feature_mixup needs stored features, and this model's cannot be "
                f"stored ({reason}): use --augment mixup (it mixes the inputs)"
            )
        say(f"features not cached ({reason}): the frozen backbone runs at every step")
    return Features(None, data.features, collator)


def prepare_output_dir(plan: Plan, data: Prepared, groups: list[dict[str, Any]], output) -> None:
    """Remove a previous run's files from the output folder (main process: only what tl-hf
    wrote, never the user's files or this run's inputs), write the groups and the augmentation
    preview, and keep the other ranks out until it is ready.

    Every rank learnt the folder's state before the `main_process_first` barrier of the data
    step, so none of them saw the folder while the main process clears it here."""
    from accelerate import PartialState

    from tl_hf.augment.base import write_augment_preview
    from tl_hf.output.folder import input_paths
    from tl_hf.output.names import PARAM_GROUPS_FILE
    from tl_hf.output.save import write_json

    args = plan.args
    output_dir = args.training.output_dir
    if args.training.process_index == 0:
        if output.folder is not None:
            output.folder.start_writing()  # the manifest, before any other file
            if output.resume_from is None:
                output.folder.remove_owned(input_paths(args.data), log=say)
        os.makedirs(output_dir, exist_ok=True)
        write_json(os.path.join(output_dir, PARAM_GROUPS_FILE), groups)
        if data.augmenter is not None and args.augment.augment_preview > 0:
            write_augment_preview(
                plan.modality,
                data.originals,
                data.augmenter,
                args.augment.augment_preview,
                args.training.seed,
                output_dir,
            )
    PartialState().wait_for_everyone()
