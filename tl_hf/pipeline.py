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
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"[tl-hf] {message}", flush=True)


def run(args: RunArgs, dataset=None) -> RunResult:
    """Run one fine-tuning job end to end and return its result."""
    from tl_hf.timing import PhaseTimer

    timer = PhaseTimer()  # where the time goes (--profile prints it)
    with timer.phase("imports"):
        from transformers import set_seed

        from tl_hf.model import build_model
        from tl_hf.train import TLTrainer, compute_metrics

    # 1. config: everything a user can get wrong is checked before any weights are loaded.
    with timer.phase("plan and checks"):
        plan = plan_run(args)
        set_seed(args.training.seed)
    # 2-4. data, augmentation, preprocessing: once, on the main process first (others read the cache).
    with timer.phase("data: load, augment, preprocess"):
        data = prepare_data(args, plan, dataset)
    # 5. model with the new head.
    with timer.phase("model load"):
        model = build_model(
            plan.modality.auto_model,
            plan.model_path,
            args.model,
            data.label_names,
            plan.checkpoint_config,
        )
        plan.modality.adapt_model(model, data.processor)
    # 6. strategy: freezing, then the parameter groups the optimizer will hold.
    with timer.phase("strategy and groups"):
        groups = apply_strategy_step(model, args, plan)
    # 6b. cached features (frozen backbone): the backbone runs once over every split.
    batch_augment = (
        plan.modality.build_batch_augment(plan.specs, len(data.label_names), args.training.seed)
        if plan.specs
        else None
    )
    with timer.phase("feature cache"):
        cache, features, collator = cache_features_step(model, args, plan, data, batch_augment)
    # the Trainer's copy: keeps the columns its inputs are made from
    training_args = plan.training_args
    training_args.remove_unused_columns &= not (data.keep_raw_columns or cache is not None)
    # 7. train with the early-stopping preset.
    with timer.phase("output folder and trainer"):
        prepare_output_dir(args, plan, data, groups)
        callbacks, early_stopping = build_callbacks(args, training_args.output_dir)
        trainer = TLTrainer(
            model=model,
            args=training_args,
            train_dataset=features["train"],
            eval_dataset=features["validation"],
            data_collator=collator,
            processing_class=data.processor,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            strategy=args.strategy.strategy,
            llrd_decay=args.strategy.llrd_decay,
            batch_augment=batch_augment,
            timer=timer,
            speed=args.speed,
        )
    with timer.phase("train"):
        train_result = train_step(trainer, cache, args)
    monitor = callbacks[-1]
    timer.add("curves and history files", monitor.write_seconds, inside="train")
    # 8. report: metrics of the restored best model on validation and test.
    with timer.phase("final evaluation and test predictions"):
        metrics = evaluate_step(
            trainer, train_result, early_stopping, features, data.label_names, args
        )
    if cache is not None:
        cache.restore()  # the trained head back on the real backbone: a normal full checkpoint
        metrics["cached_features"] = True
    # 9. save: the best model, its processor, results, config, diagnosis, card, report; push.
    ran = dataclasses.replace(
        args,
        training=training_args,
        strategy=dataclasses.replace(args.strategy, cache_features=cache is not None),
    )
    with timer.phase("save model"):
        trainer.save_model(training_args.output_dir)
    if training_args.process_index == 0:
        save_and_report(ran, plan, metrics, len(data.label_names), dataset, timer)
    return RunResult(metrics, trainer.model, training_args.output_dir, ran, groups)


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
    from tl_hf.model import load_checkpoint_config
    from tl_hf.save import check_output_dir

    modality = get_modality(args.modality)
    check_output_dir(
        args.training.output_dir, args.data.overwrite_output_dir, "output_dir" in args.explicit
    )
    model_path = args.model.model_name_or_path or modality.default_model()
    if not model_path:
        raise UserError(
            f"the {modality.name} modality has no embedded checkpoint: pass --model_name_or_path"
        )
    checkpoint_config = load_checkpoint_config(model_path, args.model)
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
    hub = detach_hub_settings(training_args)
    if hub.push:
        hub.token = check_push_ready(hub.repo_id, hub.token)
    return Plan(
        modality, model_path, checkpoint_config, specs, copies, on_the_fly, hub, training_args
    )


def prepare_data(args: RunArgs, plan: Plan, dataset=None) -> Prepared:
    """Steps 2-4: load and validate the data, add augmented copies (map mode) or the
    on-the-fly transform, and preprocess every split."""
    from tl_hf.augment import OnTheFly, apply_augment_copies, build_augmenter
    from tl_hf.data import label_names, load_classification_data

    modality, training_args = plan.modality, args.training
    num_proc = args.data.preprocessing_num_workers
    with training_args.main_process_first(desc="dataset preparation"):
        dsd = load_classification_data(
            args.data, modality, training_args.seed, dataset, args.model.cache_dir
        )
        processor = modality.build_processor(plan.model_path, args, plan.checkpoint_config)
        augmenter = None
        if plan.specs:
            augmenter = build_augmenter(
                modality, plan.specs, modality.augment_context(processor, args)
            )
        originals = dsd["train"]
        if augmenter is not None and not plan.on_the_fly:
            dsd["train"] = apply_augment_copies(
                dsd["train"], augmenter, plan.specs, plan.copies, training_args.seed, num_proc
            )
        skip = ("train",) if plan.on_the_fly else ()
        features = modality.preprocess(dsd, processor, args.data, num_proc, skip)
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


def apply_strategy_step(model, args: RunArgs, plan: Plan) -> list[dict[str, Any]]:
    """Step 6: freeze what the strategy keeps fixed and describe the optimizer's groups."""
    from tl_hf.strategy import (
        apply_freeze_feature_encoder,
        apply_strategy,
        build_param_groups,
        describe_param_groups,
        format_param_groups,
    )

    strategy, lr = args.strategy, args.training.learning_rate
    apply_strategy(model, strategy.strategy, strategy.trainable_layers)
    if strategy.freeze_feature_encoder:
        apply_freeze_feature_encoder(model)
    groups = describe_param_groups(
        build_param_groups(
            model, strategy.strategy, lr, args.training.weight_decay, strategy.llrd_decay
        )
    )
    _log(
        f"strategy {strategy.strategy}, learning rate {lr:g}"
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
    from tl_hf.strategy import head_parameter_names

    collator = plan.modality.build_collator(data.processor)
    use_cache, reason = cache_plan(args, plan.on_the_fly, batch_augment)
    if use_cache:
        try:
            cache = build_feature_cache(
                model, data.features, collator, head_parameter_names(model), args.training, log=_log
            )
            return cache, cache.features, feature_collator
        except CannotCache as err:
            reason = str(err)
    if args.strategy.strategy == "frozen":
        _log(f"features not cached ({reason}): the frozen backbone runs at every step")
    return None, data.features, collator


def prepare_output_dir(
    args: RunArgs, plan: Plan, data: Prepared, groups: list[dict[str, Any]]
) -> None:
    """Clear a previous finished run from the output folder (main process), write the groups
    and the augmentation preview, and keep the other ranks out until it is ready.

    Every rank ran `check_output_dir` before the `main_process_first` barrier of the data
    step, so none of them saw the folder while the main process clears it here."""
    from accelerate import PartialState

    from tl_hf.augment import write_augment_preview
    from tl_hf.save import clear_output_dir, write_json

    output_dir = args.training.output_dir
    if args.training.process_index == 0:
        clear_output_dir(output_dir)
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


def build_callbacks(args: RunArgs, output_dir: str):
    """The early-stopping preset's callback (None with patience 0) and the monitor."""
    from tl_hf.report import MonitorCallback
    from tl_hf.train import build_early_stopping

    early_stopping = build_early_stopping(
        args.strategy.early_stopping_patience, args.strategy.early_stopping_threshold
    )
    # the curves are redrawn while drawing takes at most a tenth of the run's time (quick
    # epochs would otherwise spend more time drawing than training), and always at the end
    monitor = MonitorCallback(
        output_dir, early_stopping_patience=args.strategy.early_stopping_patience, draw_budget=0.1
    )
    return [c for c in (early_stopping, monitor) if c is not None], early_stopping


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
) -> None:
    """Step 9 (main process): results, the run config of what ran, the diagnosis, the model
    card and report (read from those files), then the push."""
    from tl_hf.hub import push_output_dir
    from tl_hf.report import (
        build_model_card,
        diagnose,
        format_diagnosis,
        load_history,
        write_diagnosis,
        write_report_html,
    )
    from tl_hf.save import write_json
    from tl_hf.timing import TIMINGS_FILE, PhaseTimer

    timer = timer if timer is not None else PhaseTimer()
    output_dir, hub = ran.training.output_dir, plan.hub
    phase = timer.phase
    with phase("report: results and run config"):
        _write_results_and_config(ran, plan, metrics, dataset)
    with phase("report: diagnosis"):
        diagnosis = diagnose(
            load_history(output_dir), strategy=ran.strategy.strategy, num_labels=num_labels
        )
        write_diagnosis(output_dir, diagnosis)
        _log(format_diagnosis(diagnosis))
    with phase("report: model card"):
        build_model_card(output_dir)
    with phase("report: report.html"):
        write_report_html(output_dir)
    if hub.push:
        with phase("push to the Hub"):
            _log(f"pushed to {push_output_dir(output_dir, hub.repo_id, hub.private, hub.token)}")
    if ran.speed.profile:
        write_json(os.path.join(output_dir, TIMINGS_FILE), timer.as_dict())
        _log("where the time went (--profile):\n" + timer.table())


def _write_results_and_config(ran: RunArgs, plan: Plan, metrics: dict, dataset=None) -> None:
    """`all_results.json` and `run_config.yaml` (what ran, enough to reproduce it)."""
    from tl_hf.save import write_json, write_run_config

    output_dir, data_args, hub = ran.training.output_dir, ran.data, plan.hub
    write_json(os.path.join(output_dir, "all_results.json"), metrics)
    embedded_data = not (data_args.dataset_name or data_args.train_file or dataset is not None)
    write_run_config(
        os.path.join(output_dir, "run_config.yaml"),
        {
            **ran.to_dict(),
            "model_name_or_path": plan.model_path,
            "push_to_hub": hub.push,
            "dataset_name": plan.modality.default_dataset
            if embedded_data
            else data_args.dataset_name,
            "hub_model_id": hub.repo_id if hub.push else ran.training.hub_model_id,
        },
    )


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
