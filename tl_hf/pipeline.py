"""The pipeline every entry point runs, top to bottom:

    config -> data -> augment -> preprocess -> model -> strategy -> train -> report -> save/push

`run()` is the straight-line flow, one named step per stage below it; `train_*_classifier()`
are the Python API; the recipes in `recipes/` parse flags and call `run()`. What differs by
modality comes from its `tl_hf.modality.Modality` record.

`run()` never changes the arguments it is given: what it derives (whether features were
cached, which columns the Trainer keeps, the Hub settings taken out of the Trainer's
arguments) goes into new values, and `RunResult.args` / `run_config.yaml` record what ran.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from dataclasses import dataclass
from typing import Any

from tl_hf.config import RunArgs, UserError, build_args


@dataclass
class RunResult:
    """What a run returns: its metrics (as in all_results.json), the trained (best) model,
    where it was saved, and the arguments as they ran."""

    metrics: dict[str, Any]
    model: Any
    output_dir: str
    args: RunArgs
    param_groups: list[dict[str, Any]]


@dataclass
class Plan:
    """What a run will do, derived from its arguments before anything heavy is loaded."""

    modality: Any  # tl_hf.modality.Modality
    model_path: str
    checkpoint_config: Any
    specs: list  # augmentations (tl_hf.augment.AugmentSpec)
    copies: int  # stored augmented copies per example (map mode)
    on_the_fly: bool
    hub: Any  # tl_hf.hub.HubSettings
    training_args: Any  # the Trainer's copy of TrainingArguments (no Hub settings)


@dataclass
class Prepared:
    """The data after loading, augmentation and preprocessing."""

    features: Any  # DatasetDict of model inputs
    label_names: list[str]
    processor: Any
    augmenter: Any
    originals: Any  # the training split before augmentation (previews)
    keep_raw_columns: bool  # transforms read the raw columns: the Trainer must not drop them


def _log(message: str) -> None:
    from tl_hf.console import say

    say(message)


def run(args: RunArgs, dataset=None, prepared: Prepared | None = None, callbacks=()) -> RunResult:
    """Run one fine-tuning job end to end and return its result.

    Args:
        args: the run's arguments (`tl_hf.config.parse_args` / `build_args`).
        dataset: an in-memory dataset, if the data is not named by the arguments.
        prepared: data already loaded, augmented and preprocessed for these arguments by
            `prepare_data` (the lab shares it between trials); its splits are used as given.
        callbacks: extra `TrainerCallback`s (the lab's pruning callback).
    """
    from tl_hf.console import quiet_libraries

    # one progress bar per phase; --verbose shows the libraries' own bars and messages
    with quiet_libraries(args.report.verbose):
        return _run(args, dataset, prepared, callbacks)


def _run(args: RunArgs, dataset=None, prepared: Prepared | None = None, callbacks=()) -> RunResult:
    """The flow itself, step by step (`run` sets up the console around it)."""
    from tl_hf.timing import PhaseTimer

    timer = PhaseTimer()  # where the time goes (--profile prints it)
    with timer.phase("imports"):
        from transformers import set_seed

        import tl_hf.report.trackers  # noqa: F401  (the heavy imports, timed here)
        import tl_hf.train  # noqa: F401
        from tl_hf.interrupt import start_run

    # 1. config: everything a user can get wrong is checked before any weights are loaded.
    start_run(
        args.training.output_dir
    )  # Ctrl-C / SIGTERM from here on: one line, the resume command
    with timer.phase("plan and checks"):
        plan = plan_run(args)
        folder = open_output_step(args, plan)  # the lock, the user's files, the resume point
        set_seed(args.training.seed)
    try:
        return _run_in_folder(args, plan, folder, timer, dataset, prepared, callbacks)
    finally:
        if folder is not None:
            folder.release()


def _run_in_folder(args, plan, folder, timer, dataset, prepared, callbacks) -> RunResult:
    """Steps 2-9, with the output folder taken (`open_output_step`)."""
    from tl_hf.console import apply_phase_progress
    from tl_hf.interrupt import set_stage
    from tl_hf.report import format_diagnosis
    from tl_hf.report.share import model_display_name
    from tl_hf.report.trackers import (
        attach_trackers,
        log_final_to_trackers,
        prepare_tracker_args,
    )
    from tl_hf.train import ProgressCallback, TLTrainer, compute_metrics, find_early_stopping

    # 2-4. data, augmentation, preprocessing: once, on the main process first (others read the cache).
    set_stage("data preparation")
    with timer.phase("data: load, augment, preprocess"):
        data = prepared if prepared is not None else prepare_data(args, plan, dataset)
    # 5. model with the new head.
    set_stage("model loading")
    with timer.phase("model load"):
        model = load_model_step(
            args,
            plan,
            data,
            verbose=args.report.verbose,
            display_name=model_display_name(args.model.model_name_or_path, args.modality),
        )
        args = pooling_step(model, args, plan)
    batch_augment = (
        plan.modality.build_batch_augment(plan.specs, len(data.label_names), args.training.seed)
        if plan.specs
        else None
    )
    # 6. strategy: its changes to the model (adapters, a probe phase), freezing, then the
    # parameter groups the optimizer will hold.
    with timer.phase("strategy and groups"):
        phases = prepare_model_step(model, args, plan, data, batch_augment)
        groups = apply_strategy_step(model, args, plan)
    # 6b. cached features (frozen backbone): the backbone runs once over every split.
    with timer.phase("feature cache"):
        cache, features, collator = cache_features_step(model, args, plan, data, batch_augment)
    # the Trainer's copy of the arguments keeps the columns its inputs are made from
    training_args = plan.training_args
    training_args.remove_unused_columns &= not (data.keep_raw_columns or cache is not None)
    # 7. train with the early-stopping preset (from the checkpoint being resumed, if any).
    with timer.phase("output folder and trainer"):
        prepare_output_dir(args, plan, data, groups, folder)
        preset, _ = build_callbacks(
            args, training_args.output_dir, phases, training_args.resume_from_checkpoint
        )
        prepare_tracker_args(training_args, args.explicit)  # before trackio is imported
        trainer = TLTrainer(
            model=model,
            args=training_args,
            train_dataset=features["train"],
            eval_dataset=features["validation"],
            data_collator=collator,
            processing_class=data.processor,
            compute_metrics=compute_metrics,
            callbacks=[*preset, *callbacks, ProgressCallback()],
            strategy=args.strategy.strategy,
            llrd_decay=args.strategy.llrd_decay,
            strategy_options=args.strategy,
            batch_augment=batch_augment,
            timer=timer,
            speed=args.speed,
        )
        attach_trackers(
            trainer
        )  # --report_to tensorboard/trackio: in the folder, lr of every group
        progress = apply_phase_progress(trainer, args.report.verbose)
    set_stage("training")
    with timer.phase("train"):
        train_result = train_step(trainer, cache, args)
    timer.add("curves and history files", preset[-1].write_seconds, inside="train")  # the monitor
    # 8. report: metrics of the restored best model on validation and test. (A resumed
    # Trainer replaces the early-stopping callback by one restored from the checkpoint.)
    set_stage("final evaluation")
    with timer.phase("final evaluation and test predictions"):
        early_stopping = find_early_stopping(trainer)
        metrics = evaluate_step(
            trainer, train_result, early_stopping, features, data.label_names, args
        )
    if progress is not None:
        progress.close_evaluation()
    if cache is not None:
        cache.restore()  # the trained head back on the real backbone: a normal full checkpoint
        metrics["cached_features"] = True
    # 9. save: the best model, its processor, results, config, diagnosis, card, report; push.
    ran = dataclasses.replace(
        args,
        training=training_args,
        strategy=dataclasses.replace(args.strategy, cache_features=cache is not None),
    )
    set_stage("saving")
    with timer.phase("save model"):
        save_model_step(trainer, args)
    if training_args.process_index == 0:
        diagnosis = save_and_report(ran, plan, metrics, len(data.label_names), dataset, timer)
        log_final_to_trackers(trainer, metrics, format_diagnosis(diagnosis))
    return RunResult(metrics, trainer.model, training_args.output_dir, ran, groups)


def load_model_step(args: RunArgs, plan: Plan, data: Prepared, **options):
    """Step 5: the checkpoint with a new head for the data's labels, adapted to the modality
    (`options`: `tl_hf.model.build_model`'s verbose and display_name)."""
    from tl_hf.model import build_model

    model = build_model(
        plan.modality.auto_model,
        plan.model_path,
        args.model,
        data.label_names,
        plan.checkpoint_config,
        **options,
    )
    plan.modality.adapt_model(model, data.processor)
    return model


def pooling_step(model, args: RunArgs, plan: Plan) -> RunArgs:
    """Step 5b: `--pooling` (`tl_hf.pooling`): the checkpoint's declared mean pooling as an
    appended block where it applies; the returned arguments record what the head reads."""
    from tl_hf.pooling import resolve_pooling
    from tl_hf.strategy import get_strategy

    strategy = get_strategy(args.strategy.strategy)
    pooling, note = resolve_pooling(
        model,
        plan.model_path,
        args.model.pooling,
        strategy.head_on_frozen_features(args.strategy),
    )
    if note:
        _log(f"pooling: {note}")
    return dataclasses.replace(args, model=dataclasses.replace(args.model, pooling=pooling))


def train_step(trainer, cache, args: RunArgs):
    """Step 7: `trainer.train()`, or, with cached features on one process, the head's tight
    loop over device-resident feature tensors (same optimizer, schedule, evaluation, early
    stopping and checkpoints; see `tl_hf.head_loop`)."""
    if cache is not None and args.speed.fast_head:
        from tl_hf.head_loop import head_loop_blocker, train_head_on_features

        reason = head_loop_blocker(trainer)
        if reason is None:
            return train_head_on_features(trainer, cache.features)
        _log(f"head trains through the Trainer's loop ({reason})")
    return trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)


def plan_run(args: RunArgs) -> Plan:
    """Step 1: check the output folder, the checkpoint, the augmentations, the cache request
    and the Hub settings; nothing heavy is loaded."""
    from tl_hf.augment import resolve_augment_specs
    from tl_hf.features import cache_plan
    from tl_hf.hub import check_push_ready, detach_hub_settings
    from tl_hf.modality import get_modality
    from tl_hf.model import check_checkpoint, load_checkpoint_config

    modality = get_modality(args.modality)
    model_path = args.model.model_name_or_path or modality.default_model()
    if not model_path:
        raise UserError(
            f"the {modality.name} modality has no embedded checkpoint: pass --model_name_or_path"
        )
    checkpoint_config = load_checkpoint_config(model_path, args.model)
    check_checkpoint(model_path, checkpoint_config, modality.auto_model, modality.name)
    specs = resolve_augment_specs(modality, args.augment, args.explicit)
    on_the_fly = bool(specs) and args.augment.augment_mode == "on_the_fly"
    copies = args.augment.augment_copies
    if specs and not on_the_fly and copies == 0:
        copies = 1  # --augment given in map mode without a count: one augmented copy
    cache_plan(
        args, on_the_fly
    )  # an impossible --cache_features true fails here, before any loading
    # We push once at the end (best model, card, report): the Trainer must neither push every
    # checkpoint nor pickle the token into training_args.bin, so it gets a copy without them.
    training_args = copy.copy(args.training)
    training_args.resume_from_checkpoint = None  # open_output_step sets where it resumes from
    # the early-stopping patience counter and best-checkpoint pointer come back with it
    training_args.restore_callback_states_from_checkpoint = True
    hub = detach_hub_settings(training_args)
    if hub.push:
        hub.token = check_push_ready(hub.repo_id, hub.token)
    return Plan(
        modality, model_path, checkpoint_config, specs, copies, on_the_fly, hub, training_args
    )


def open_output_step(args: RunArgs, plan: Plan):
    """Step 1b: take the output folder (the main process holds its lock and manifest until the
    run ends; the user's files in it are checked, `tl_hf.output.ownership`) and find the
    checkpoint a resumed run continues from. Returns the `OutputFolder` (None on other ranks)."""
    from tl_hf.save import open_run_folder

    folder, resume_from = open_run_folder(
        args.training, args.data, "output_dir" in args.explicit, _log
    )
    if args.data.resume and resume_from is None:
        _log(f"--resume: no complete checkpoint in {args.training.output_dir}, starting afresh")
    plan.training_args.resume_from_checkpoint = resume_from
    return folder


def prepare_data(args: RunArgs, plan: Plan, dataset=None) -> Prepared:
    """Steps 2-4: load and validate the data, add augmented copies (map mode) or the
    on-the-fly transform, and preprocess every split."""
    from tl_hf.augment import OnTheFly, apply_augment_copies, build_augmenter
    from tl_hf.console import phase
    from tl_hf.data import label_names, load_classification_data

    modality, training_args = plan.modality, args.training
    num_proc = args.data.preprocessing_num_workers
    with training_args.main_process_first(desc="dataset preparation"):
        # bad data is found while loading: the phase's bar starts after that, one step done
        dsd = load_classification_data(
            args.data, modality, training_args.seed, dataset, args.model.cache_dir
        )
        with phase("data", 2, "step", initial=1) as bar:
            processor = modality.build_processor(plan.model_path, args, plan.checkpoint_config)
            augmenter = None
            if plan.specs:
                augmenter = build_augmenter(
                    modality, plan.specs, modality.augment_context(processor, args)
                )
            originals = dsd["train"]
            if augmenter is not None and not plan.on_the_fly:  # stored copies: one more step
                bar.total += 1
                bar.set_postfix_str("augment")
                dsd["train"] = apply_augment_copies(
                    dsd["train"], augmenter, plan.specs, plan.copies, training_args.seed, num_proc
                )
                bar.update(1)
            skip = ("train",) if plan.on_the_fly else ()
            bar.set_postfix_str("preprocess")
            features = modality.preprocess(dsd, processor, args.data, num_proc, skip)
            bar.update(1)
        if plan.on_the_fly:
            # the training split is preprocessed per batch, after a fresh augmentation every epoch
            preprocess = modality.make_preprocess(processor, args.data, True)
            features["train"] = dsd["train"].with_transform(
                OnTheFly(augmenter, preprocess, training_args.seed)
            )
    names = label_names(dsd)
    _log(
        f"data: {', '.join(f'{k} {len(v)}' for k, v in features.items())} rows, {len(names)} classes: "
        f"{', '.join(names)}"
    )
    if plan.specs:
        _log(
            f"augmentation: {', '.join(map(str, plan.specs))} "
            + (
                "(on the fly, new draws every epoch)"
                if plan.on_the_fly
                else f"({plan.copies} stored copies per example)"
            )
        )
    keep_raw = plan.on_the_fly or modality.preprocess_on_access
    return Prepared(features, names, processor, augmenter, originals, keep_raw)


def prepare_model_step(model, args: RunArgs, plan: Plan, data: Prepared, batch_augment) -> list:
    """Step 6a: the strategy's changes to the model before its parameters are chosen (LoRA
    adapters, LP-FT's linear probe). Returns the histories of the phases trained here."""
    from tl_hf.report.monitor import load_monitor_state
    from tl_hf.strategy import StrategyContext, get_strategy

    # A resumed run's checkpoint holds the whole model as the main phase left it and the
    # histories of the phases before it: those phases are not trained again.
    resume_from = plan.training_args.resume_from_checkpoint
    recorded = (
        list((load_monitor_state(resume_from) or {}).get("phases", [])) if resume_from else []
    )

    calls = itertools.count()

    def train_phase(model, name: str, epochs: int, learning_rate: float) -> dict:
        done = next(calls)
        if done < len(recorded):
            _log(
                f"resume: phase {done + 1} ({recorded[done].get('name', name)}) is in "
                f"{os.path.basename(resume_from)}; not trained again"
            )
            return {**recorded[done], "name": name}
        return train_phase_step(model, args, plan, data, batch_augment, name, epochs, learning_rate)

    context = StrategyContext(
        args.strategy, dict(plan.modality.default_learning_rates), _log, train_phase
    )
    get_strategy(args.strategy.strategy).prepare_model(model, context)
    return context.phases


def train_phase_step(
    model, args: RunArgs, plan: Plan, data: Prepared, batch_augment, name, epochs, learning_rate
) -> dict:
    """A training phase before the main one (`StrategyContext.train_phase`): the model trains
    under strategy `name` for `epochs` epochs, evaluated every epoch, no checkpoints (the
    phase ends on its last epoch), features cached when that strategy allows it. Returns the
    phase's history (`train`, `eval`, `learning_rates` records)."""
    import tempfile

    from tl_hf.report import MonitorCallback
    from tl_hf.strategy import apply_freeze_feature_encoder, apply_strategy
    from tl_hf.train import TLTrainer, compute_metrics

    options = dataclasses.replace(args.strategy, strategy=name, trainable_layers=0)
    phase_args = dataclasses.replace(args, strategy=options)
    apply_strategy(model, name, options=options)
    if options.freeze_feature_encoder:
        apply_freeze_feature_encoder(model)
    cache, features, collator = cache_features_step(model, phase_args, plan, data, batch_augment)
    with tempfile.TemporaryDirectory(prefix="tl_hf_phase_") as tmp:
        training_args = dataclasses.replace(
            plan.training_args,
            output_dir=tmp,
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            save_strategy="no",
            load_best_model_at_end=False,
            resume_from_checkpoint=None,
        )
        training_args.remove_unused_columns &= not (data.keep_raw_columns or cache is not None)
        monitor = MonitorCallback(tmp, plot=False)
        trainer = TLTrainer(
            model=model,
            args=training_args,
            train_dataset=features["train"],
            eval_dataset=features["validation"],
            data_collator=collator,
            processing_class=data.processor,
            compute_metrics=compute_metrics,
            callbacks=[monitor],
            strategy=name,
            strategy_options=options,
            batch_augment=batch_augment if cache is None else None,
        )
        trainer.train()
    if cache is not None:
        cache.restore()
    # the phase's Trainer (and its DDP wrapper, which hooks the parameters) must be gone
    # before the main Trainer wraps the model again
    del trainer
    import gc

    gc.collect()
    return {
        "name": name,
        "epochs": epochs,
        **{k: monitor.history[k] for k in ("train", "eval", "learning_rates")},
    }


def apply_strategy_step(model, args: RunArgs, plan: Plan) -> list[dict[str, Any]]:
    """Step 6: freeze what the strategy keeps fixed and describe the optimizer's groups."""
    from tl_hf.strategy import (
        apply_freeze_feature_encoder,
        apply_strategy,
        build_param_groups,
        describe_param_groups,
        format_param_groups,
        get_strategy,
    )

    strategy, lr = args.strategy, args.training.learning_rate
    apply_strategy(model, strategy.strategy, strategy.trainable_layers, options=strategy)
    if strategy.freeze_feature_encoder:
        apply_freeze_feature_encoder(model)
    groups = describe_param_groups(
        build_param_groups(
            model,
            strategy.strategy,
            lr,
            args.training.weight_decay,
            strategy.llrd_decay,
            options=strategy,
        )
    )
    detail = get_strategy(strategy.strategy).describe(dataclasses.asdict(strategy))
    _log(
        f"strategy {strategy.strategy}{f' ({detail})' if detail else ''}, learning rate {lr:g}"
        + ("" if "learning_rate" in args.explicit else " (the strategy's default)")
        + "\n"
        + format_param_groups(groups, sum(p.numel() for p in model.parameters()))
    )
    return groups


def cache_features_step(model, args: RunArgs, plan: Plan, data: Prepared, batch_augment):
    """Step 6b: with a frozen backbone, run it once over every split and train the head on its
    stored output (not with batch-level augmentation, which changes every batch's inputs).
    Returns (cache or None, the features to train on, their collator)."""
    from tl_hf.features import CannotCache, build_feature_cache, cache_plan, feature_collator
    from tl_hf.strategy import get_strategy, head_parameter_names

    collator = plan.modality.build_collator(data.processor)
    use_cache, reason = cache_plan(args, plan.on_the_fly, batch_augment)
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
                    args.training,
                    log=_log,
                    on_rows=bar.update,
                )
            return cache, cache.features, feature_collator
        except CannotCache as err:
            reason = str(err)
    if not get_strategy(args.strategy.strategy).trains_backbone:
        _log(f"features not cached ({reason}): the frozen backbone runs at every step")
    return None, data.features, collator


def prepare_output_dir(
    args: RunArgs, plan: Plan, data: Prepared, groups: list[dict[str, Any]], folder=None
) -> None:
    """Remove a previous run's files from the output folder (main process: only what tl-hf
    wrote, never the user's files or this run's inputs), write the groups and the augmentation
    preview, and keep the other ranks out until it is ready.

    Every rank learnt the folder's state before the `main_process_first` barrier of the data
    step, so none of them saw the folder while the main process clears it here."""
    from accelerate import PartialState

    from tl_hf.augment import write_augment_preview
    from tl_hf.save import input_paths, write_json

    output_dir = args.training.output_dir
    if args.training.process_index == 0:
        if folder is not None:
            folder.start_writing()  # the manifest, before any other file
            if plan.training_args.resume_from_checkpoint is None:
                folder.remove_owned(input_paths(args.data), log=_log)
        os.makedirs(output_dir, exist_ok=True)
        write_json(os.path.join(output_dir, "param_groups.json"), groups)
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


def build_callbacks(
    args: RunArgs, output_dir: str, phases: list | None = None, resume_from: str | None = None
):
    """The strategy's callbacks, the early-stopping preset's callback (None with patience 0)
    and the monitor (which keeps the live report.html, served on 127.0.0.1 with
    --monitor_port, records the phases trained before the main one, if any, and starts from
    the history saved in `resume_from`, the checkpoint a resumed run continues from).

    The strategy's come first: what they change in a step (a group's learning rate) is what
    the monitor then records."""
    from tl_hf.report import MonitorCallback
    from tl_hf.report.share import model_display_name
    from tl_hf.strategy import get_strategy
    from tl_hf.train import build_early_stopping

    early_stopping = build_early_stopping(
        args.strategy.early_stopping_patience, args.strategy.early_stopping_threshold
    )
    model = model_display_name(args.model.model_name_or_path, args.modality)
    # the curves are redrawn while drawing takes at most a tenth of the run's time (quick
    # epochs would otherwise spend more time drawing than training), and always at the end
    monitor = MonitorCallback(
        output_dir,
        early_stopping_patience=args.strategy.early_stopping_patience,
        title=f"tl-hf: {model} ({os.path.basename(os.path.abspath(output_dir))})",
        draw_budget=0.1,
        resume_from=resume_from,
    )
    if phases:
        monitor.history["phases"] = list(phases)
    port = args.report.monitor_port
    if port and args.training.process_index == 0:
        from tl_hf.report.live import serve_output_dir

        serve_output_dir(output_dir, port)  # a daemon thread: it ends with the process
        _log(f"live report: http://127.0.0.1:{port}/report.html")
    else:
        _log(f"live report: {os.path.abspath(os.path.join(output_dir, 'report.html'))}")
    own = get_strategy(args.strategy.strategy).callbacks(args.strategy)
    return [*own, *(c for c in (early_stopping, monitor) if c is not None)], early_stopping


def save_model_step(trainer, args: RunArgs) -> None:
    """Step 9a (every rank): the final model as the strategy saves it (default: the Trainer's
    `save_model`, file by file atomically; LoRA writes its adapter and then the merged model)."""
    from tl_hf.save import save_model_atomically
    from tl_hf.strategy import get_strategy

    strategy = get_strategy(args.strategy.strategy)
    if strategy.save is None:
        save_model_atomically(trainer, trainer.args.output_dir)  # each file whole or absent
    else:
        strategy.save(trainer, args.strategy, trainer.args.output_dir)


def evaluate_step(
    trainer, train_result, early_stopping, features, names: list[str], args: RunArgs
) -> dict:
    """Step 8: training figures, then the restored best model on validation and test."""
    import torch

    from tl_hf.save import write_json
    from tl_hf.train import per_class_report, summarize_early_stopping

    stopping = summarize_early_stopping(
        trainer, early_stopping
    )  # before evaluate() ticks the callback
    metrics: dict[str, Any] = {
        f"train_{k}" if not k.startswith("train_") else k: v
        for k, v in train_result.metrics.items()
    }
    metrics["train_samples"] = len(features["train"])
    if (
        torch.cuda.is_available()
    ):  # this rank's peak, training included (bench/gpu_check.sh reads it)
        metrics["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    metrics.update(recorded_evaluation(trainer) or trainer.evaluate(metric_key_prefix="eval"))
    metrics["eval_samples"] = len(features["validation"])
    if "test" in features:
        prediction = trainer.predict(features["test"], metric_key_prefix="test")
        metrics.update(prediction.metrics)
        metrics["test_samples"] = len(features["test"])
        test_predictions = prediction.predictions.argmax(-1)
        metrics["test_per_class"] = per_class_report(test_predictions, prediction.label_ids, names)
        if trainer.args.process_index == 0:
            write_json(
                os.path.join(trainer.args.output_dir, "test_predictions.json"),
                {
                    "labels": prediction.label_ids,
                    "predictions": test_predictions,
                    "label_names": names,
                },
            )
    metrics.update(stopping)
    metrics["strategy"] = args.strategy.strategy
    return metrics


def recorded_evaluation(trainer) -> dict[str, Any] | None:
    """The validation metrics of the final model when training already evaluated exactly that
    model: the restored best checkpoint, evaluated at its step, or the last step's model when
    the last evaluation came after the last step. None when it must be evaluated again."""
    state, args = trainer.state, trainer.args
    if args.bf16_full_eval or args.fp16_full_eval:
        return None  # after training, evaluation casts the model: not what was recorded
    if args.load_best_model_at_end and state.best_model_checkpoint is not None:
        step = state.best_global_step
    else:
        step = state.global_step
    for record in reversed(state.log_history):
        if record.get("step") == step and "eval_loss" in record:
            return {k: v for k, v in record.items() if k.startswith("eval_")}
    return None


def save_and_report(
    ran: RunArgs, plan: Plan, metrics: dict, num_labels: int, dataset=None, timer=None
) -> dict:
    """Step 9 (main process): the run config of what ran, the diagnosis, the model card and
    report, then the results (`all_results.json`, the finished marker: written last, so a
    folder that has it is complete), then the push. Returns the diagnosis."""
    from tl_hf.hub import push_output_dir
    from tl_hf.report import (
        build_model_card,
        diagnose,
        format_diagnosis,
        load_history,
        write_diagnosis,
        write_report_html,
    )
    from tl_hf.report.share import shareable
    from tl_hf.save import FINISHED_MARKER, jsonable, write_json
    from tl_hf.timing import TIMINGS_FILE, PhaseTimer

    timer = timer if timer is not None else PhaseTimer()
    output_dir, hub = ran.training.output_dir, plan.hub
    phase = timer.phase
    # pushed beside the card: local paths are named by their last component (share.py)
    results = shareable(jsonable(metrics))
    with phase("report: run config"):
        _write_run_config(ran, plan, dataset)
    with phase("report: diagnosis"):
        diagnosis = diagnose(
            load_history(output_dir), strategy=ran.strategy.strategy, num_labels=num_labels
        )
        write_diagnosis(output_dir, diagnosis)
        _log(format_diagnosis(diagnosis))
    with phase("report: model card"):
        build_model_card(output_dir, results=results)
    with phase("report: report.html"):
        write_report_html(output_dir, results=results)
    if ran.speed.profile:
        write_json(os.path.join(output_dir, TIMINGS_FILE), timer.as_dict())
        _log("where the time went (--profile):\n" + timer.table())
    write_json(os.path.join(output_dir, FINISHED_MARKER), results)
    if hub.push:
        _log(f"pushed to {push_output_dir(output_dir, hub.repo_id, hub.private, hub.token)}")
    return diagnosis


def _write_run_config(ran: RunArgs, plan: Plan, dataset=None) -> None:
    """`run_config.yaml`: what ran, enough to reproduce it (from scratch, not its resumption)."""
    from tl_hf.report.share import reproduce_command, shareable
    from tl_hf.save import write_run_config

    output_dir, data_args, hub = ran.training.output_dir, ran.data, plan.hub
    embedded_data = not (data_args.dataset_name or data_args.train_file or dataset is not None)
    config = {
        **ran.to_dict(),
        # None = the embedded default checkpoint (the card names it by its Hub id)
        "model_name_or_path": ran.model.model_name_or_path,
        "push_to_hub": hub.push,
        "dataset_name": plan.modality.default_dataset if embedded_data else data_args.dataset_name,
        "hub_model_id": hub.repo_id if hub.push else ran.training.hub_model_id,
        "resume": False,
        "resume_from_checkpoint": None,
    }
    config = shareable(config)
    config["command"] = reproduce_command(ran.modality, config, ran.explicit)
    write_run_config(os.path.join(output_dir, "run_config.yaml"), config)


def train_classifier(
    modality: str, dataset=None, args: RunArgs | None = None, **kwargs: Any
) -> RunResult:
    """Fine-tune a classifier: the same pipeline and arguments as the recipes.

    Args:
        modality: "text", "image", "audio", or a registered modality's name.
        dataset: optional in-memory `datasets.Dataset`/`DatasetDict` (else `dataset_name`/files).
        args: already-built arguments (from `tl_hf.config.parse_args`); else built from kwargs.
        **kwargs: any recipe flag by name, e.g. `model_name_or_path`, `strategy`,
            `learning_rate`, `num_train_epochs`, `output_dir`.
    """
    if args is not None and kwargs:
        raise UserError("give either args or keyword arguments, not both")
    return run(args if args is not None else build_args(modality, dataset, **kwargs), dataset)


def train_text_classifier(dataset=None, **kwargs: Any) -> RunResult:
    """`train_classifier("text", ...)`."""
    return train_classifier("text", dataset, **kwargs)


def train_image_classifier(dataset=None, **kwargs: Any) -> RunResult:
    """`train_classifier("image", ...)`."""
    return train_classifier("image", dataset, **kwargs)


def train_audio_classifier(dataset=None, **kwargs: Any) -> RunResult:
    """`train_classifier("audio", ...)`."""
    return train_classifier("audio", dataset, **kwargs)
