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
    from transformers import set_seed

    from tl_hf.interrupt import set_stage, start_run
    from tl_hf.model import build_model
    from tl_hf.save import save_model_atomically
    from tl_hf.train import ProgressCallback, TLTrainer, compute_metrics, find_early_stopping

    # 1. config: everything a user can get wrong is checked before any weights are loaded.
    start_run(args.training.output_dir)
    plan = plan_run(args)
    set_seed(args.training.seed)
    # 2-4. data, augmentation, preprocessing: once, on the main process first (others read the cache).
    set_stage("data preparation")
    data = prepare_data(args, plan, dataset)
    # 5. model with the new head.
    set_stage("model loading")
    model = build_model(
        plan.modality.auto_model,
        plan.model_path,
        args.model,
        data.label_names,
        plan.checkpoint_config,
    )
    plan.modality.adapt_model(model, data.processor)
    # 6. strategy: freezing, then the parameter groups the optimizer will hold.
    groups = apply_strategy_step(model, args, plan)
    # 6b. cached features (frozen backbone): the backbone runs once over every split.
    batch_augment = (
        plan.modality.build_batch_augment(plan.specs, len(data.label_names), args.training.seed)
        if plan.specs
        else None
    )
    cache, features, collator = cache_features_step(model, args, plan, data, batch_augment)
    training_args = (
        plan.training_args
    )  # the Trainer's copy: keeps the columns its inputs are made from
    training_args.remove_unused_columns &= not (data.keep_raw_columns or cache is not None)
    # 7. train with the early-stopping preset (from the checkpoint being resumed, if any).
    prepare_output_dir(args, plan, data, groups)
    callbacks, _ = build_callbacks(
        args, training_args.output_dir, training_args.resume_from_checkpoint
    )
    set_stage("training")
    trainer = TLTrainer(
        model=model,
        args=training_args,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        data_collator=collator,
        processing_class=data.processor,
        compute_metrics=compute_metrics,
        callbacks=[*callbacks, ProgressCallback()],
        strategy=args.strategy.strategy,
        llrd_decay=args.strategy.llrd_decay,
        batch_augment=batch_augment,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # 8. report: metrics of the restored best model on validation and test. (A resumed
    # Trainer replaces the early-stopping callback by one restored from the checkpoint.)
    set_stage("final evaluation")
    early_stopping = find_early_stopping(trainer)
    metrics = evaluate_step(trainer, train_result, early_stopping, features, data.label_names, args)
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
    save_model_atomically(trainer, training_args.output_dir)
    if training_args.process_index == 0:
        save_and_report(ran, plan, metrics, len(data.label_names), dataset)
    return RunResult(metrics, trainer.model, training_args.output_dir, ran, groups)


def plan_run(args: RunArgs) -> Plan:
    """Step 1: check the output folder, the checkpoint, the augmentations, the cache request
    and the Hub settings; nothing heavy is loaded."""
    from tl_hf.augment import resolve_augment_specs
    from tl_hf.features import cache_plan
    from tl_hf.hub import check_push_ready, detach_hub_settings
    from tl_hf.modality import get_modality
    from tl_hf.model import check_checkpoint, load_checkpoint_config
    from tl_hf.save import resolve_resume

    modality = get_modality(args.modality)
    resume_from = resolve_resume(args.training, args.data, "output_dir" in args.explicit)
    if args.data.resume and resume_from is None:
        _log(f"--resume: no complete checkpoint in {args.training.output_dir}, starting afresh")
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
    training_args.resume_from_checkpoint = resume_from
    # the early-stopping patience counter and best-checkpoint pointer come back with it
    training_args.restore_callback_states_from_checkpoint = True
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
        if plan.training_args.resume_from_checkpoint is None:
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


def build_callbacks(args: RunArgs, output_dir: str, resume_from: str | None = None):
    """The early-stopping preset's callback (None with patience 0) and the monitor (with the
    history saved in `resume_from`, the checkpoint a resumed run continues from)."""
    from tl_hf.report import MonitorCallback
    from tl_hf.train import build_early_stopping

    early_stopping = build_early_stopping(
        args.strategy.early_stopping_patience, args.strategy.early_stopping_threshold
    )
    monitor = MonitorCallback(
        output_dir,
        early_stopping_patience=args.strategy.early_stopping_patience,
        resume_from=resume_from,
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
    metrics.update(trainer.evaluate(metric_key_prefix="eval"))
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


def save_and_report(ran: RunArgs, plan: Plan, metrics: dict, num_labels: int, dataset=None) -> None:
    """Step 9 (main process): the run config of what ran, the diagnosis, the model card and
    report, then the results (`all_results.json`, the finished marker: written last, so a
    folder that has it is complete), then the push."""
    from tl_hf.hub import push_output_dir
    from tl_hf.report import (
        build_model_card,
        diagnose,
        format_diagnosis,
        load_history,
        write_diagnosis,
        write_report_html,
    )
    from tl_hf.save import FINISHED_MARKER, jsonable, write_json, write_run_config

    output_dir, data_args, hub = ran.training.output_dir, ran.data, plan.hub
    results = jsonable(metrics)
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
            # the config reproduces the run from scratch, not its resumption
            "resume": False,
            "resume_from_checkpoint": None,
        },
    )
    diagnosis = diagnose(
        load_history(output_dir), strategy=ran.strategy.strategy, num_labels=num_labels
    )
    write_diagnosis(output_dir, diagnosis)
    _log(format_diagnosis(diagnosis))
    build_model_card(output_dir, results=results)
    write_report_html(output_dir, results=results)
    write_json(os.path.join(output_dir, FINISHED_MARKER), metrics)
    if hub.push:
        _log(f"pushed to {push_output_dir(output_dir, hub.repo_id, hub.private, hub.token)}")


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
