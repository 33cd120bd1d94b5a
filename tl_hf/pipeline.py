"""The pipeline every entry point runs, top to bottom:

    config -> data -> augment -> preprocess -> model -> strategy -> train -> report -> save/push

`run()` is the straight-line flow; `train_*_classifier()` are the Python API; the recipes in
`recipes/` parse flags and call `run()`. Modality differences live in `tl_hf.text`,
`tl_hf.image` and `tl_hf.audio`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from tl_hf.config import RunArgs, UserError, build_args


@dataclass
class RunResult:
    """What a run returns: its metrics (as in all_results.json), the trained (best) model,
    where it was saved, and the resolved arguments."""

    metrics: dict[str, Any]
    model: Any
    output_dir: str
    args: RunArgs
    param_groups: list[dict[str, Any]]


def load_modality(name: str):
    return importlib.import_module(f"tl_hf.{name}")


def _log(message: str) -> None:
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"[tl-hf] {message}", flush=True)


def run(args: RunArgs, dataset=None) -> RunResult:
    """Run one fine-tuning job end to end and return its result."""
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from tl_hf.augment import (
        OnTheFly,
        apply_augment_copies,
        resolve_augment_specs,
        write_augment_preview,
    )
    from tl_hf.data import label_names, load_classification_data
    from tl_hf.features import CannotCache, build_feature_cache, cache_plan, feature_collator
    from tl_hf.hub import check_push_ready, detach_hub_settings, push_output_dir
    from tl_hf.model import build_model, load_checkpoint_config
    from tl_hf.report import (
        MonitorCallback,
        build_model_card,
        diagnose,
        format_diagnosis,
        load_history,
        write_diagnosis,
        write_report_html,
    )
    from tl_hf.save import check_output_dir, clear_output_dir, write_json, write_run_config
    from tl_hf.strategy import (
        apply_freeze_feature_encoder,
        apply_strategy,
        build_param_groups,
        describe_param_groups,
        format_param_groups,
        head_parameter_names,
    )
    from tl_hf.train import (
        TLTrainer,
        build_early_stopping,
        compute_metrics,
        per_class_report,
        summarize_early_stopping,
    )

    modality = load_modality(args.modality)
    training = args.training
    output_dir = training.output_dir
    main = training.process_index == 0

    # 1. config: everything a user can get wrong is checked before any weights are loaded.
    check_output_dir(output_dir, args.data.overwrite_output_dir, "output_dir" in args.explicit)
    model_path = args.model.model_name_or_path or modality.default_model()
    checkpoint_config = load_checkpoint_config(model_path, args.model)
    specs = resolve_augment_specs(args.modality, args.augment, args.explicit)
    copies = args.augment.augment_copies
    on_the_fly = bool(specs) and args.augment.augment_mode == "on_the_fly"
    if specs and not on_the_fly and copies == 0:
        copies = 1  # --augment given in map mode without a count: one augmented copy
    cache_plan(args, on_the_fly)  # an impossible --cache_features true fails here, before any loading
    # We push once at the end (best model, card, report): the Trainer must neither push every
    # checkpoint nor pickle the token into training_args.bin.
    hub = detach_hub_settings(training)
    if hub.push:
        hub.token = check_push_ready(hub.repo_id, hub.token)
    set_seed(training.seed)

    # 2-4. data, augmentation, preprocessing: once, on the main process first (others read the cache).
    num_proc = args.data.preprocessing_num_workers
    with training.main_process_first(desc="dataset preparation"):
        dsd = load_classification_data(args.data, modality, training.seed, dataset, args.model.cache_dir)
        names = label_names(dsd)
        processor = modality.build_processor(model_path, args, checkpoint_config)
        context = modality.augment_context(processor, args)
        augmenter = modality.build_augmenter(specs, context) if specs else None
        originals = dsd["train"]
        if augmenter is not None and not on_the_fly:
            dsd["train"] = apply_augment_copies(dsd["train"], augmenter, specs, copies, training.seed, num_proc)
        features = modality.preprocess(dsd, processor, args.data, num_proc, skip=("train",) if on_the_fly else ())
        if on_the_fly:
            # the training split is preprocessed per batch, after a fresh augmentation every epoch
            features["train"] = dsd["train"].with_transform(
                OnTheFly(augmenter, modality.make_preprocess(processor, args.data, training=True), training.seed))
        if on_the_fly or getattr(modality, "PREPROCESS_ON_ACCESS", False):
            training.remove_unused_columns = False  # the transforms read the raw columns
    _log(f"data: {', '.join(f'{k} {len(v)}' for k, v in features.items())} rows, {len(names)} classes: "
         f"{', '.join(names)}")
    if specs:
        _log(f"augmentation: {', '.join(map(str, specs))} "
             + ("(on the fly, new draws every epoch)" if on_the_fly else f"({copies} stored copies per example)"))

    # 5. model with the new head.
    model = build_model(modality.AUTO_MODEL, model_path, args.model, names, checkpoint_config)
    if hasattr(modality, "adapt_model"):
        modality.adapt_model(model, processor)

    # 6. strategy: freezing, then the parameter groups the optimizer will hold.
    apply_strategy(model, args.strategy.strategy, args.strategy.trainable_layers)
    if args.strategy.freeze_feature_encoder:
        apply_freeze_feature_encoder(model)
    groups = describe_param_groups(build_param_groups(
        model, args.strategy.strategy, training.learning_rate, training.weight_decay, args.strategy.llrd_decay))
    _log(f"strategy {args.strategy.strategy}, learning rate {training.learning_rate:g}"
         + ("" if "learning_rate" in args.explicit else " (the strategy's default)") + "\n"
         + format_param_groups(groups, sum(p.numel() for p in model.parameters())))

    # 6b. cached features (frozen backbone): the backbone runs once over every split, the head
    # trains on its stored output; the model takes raw inputs again after restore() below.
    batch_augment = modality.build_batch_augment(specs, len(names), training.seed) if specs else None
    cache = None
    use_cache, reason = cache_plan(args, on_the_fly, batch_augment)
    if use_cache:
        try:
            cache = build_feature_cache(model, features, modality.build_collator(processor),
                                        head_parameter_names(model), training, log=_log)
            features = cache.features
            training.remove_unused_columns = False  # the stored-feature columns are the model's inputs
        except CannotCache as err:
            reason = str(err)
    if args.strategy.strategy == "frozen" and cache is None:
        _log(f"features not cached ({reason}): the frozen backbone runs at every step")
    args.strategy.cache_features = cache is not None  # run_config.yaml records what ran

    # 7. train with the early-stopping preset.
    # Every rank ran check_output_dir before the main_process_first barrier above, so none of
    # them saw the folder while the main process clears it; the barrier below keeps the other
    # ranks out of the folder (Trainer, checkpoints) until it is cleared and set up again.
    if main:
        clear_output_dir(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        write_json(os.path.join(output_dir, "param_groups.json"), groups)
        if augmenter is not None and args.augment.augment_preview > 0:
            write_augment_preview(args.modality, originals, augmenter, args.augment.augment_preview,
                                  modality.INPUT_COLUMN, training.seed, output_dir)
    PartialState().wait_for_everyone()
    early_stopping = build_early_stopping(args.strategy.early_stopping_patience,
                                          args.strategy.early_stopping_threshold)
    monitor = MonitorCallback(output_dir, early_stopping_patience=args.strategy.early_stopping_patience)
    trainer = TLTrainer(
        model=model,
        args=training,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        data_collator=feature_collator if cache is not None else modality.build_collator(processor),
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=[c for c in (early_stopping, monitor) if c is not None],
        strategy=args.strategy.strategy,
        llrd_decay=args.strategy.llrd_decay,
        batch_augment=batch_augment,
    )
    train_result = trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
    stopping = summarize_early_stopping(trainer, early_stopping)  # before evaluate() below ticks the callback

    # 8. report: metrics of the restored best model on validation and test.
    metrics: dict[str, Any] = {f"train_{k}" if not k.startswith("train_") else k: v
                               for k, v in train_result.metrics.items()}
    metrics["train_samples"] = len(features["train"])
    if torch.cuda.is_available():  # this rank's peak, training included (bench/gpu_check.sh reads it)
        metrics["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    metrics.update(trainer.evaluate(metric_key_prefix="eval"))
    metrics["eval_samples"] = len(features["validation"])
    if "test" in features:
        prediction = trainer.predict(features["test"], metric_key_prefix="test")
        metrics.update(prediction.metrics)
        metrics["test_samples"] = len(features["test"])
        test_predictions = prediction.predictions.argmax(-1)
        metrics["test_per_class"] = per_class_report(test_predictions, prediction.label_ids, names)
        if main:
            write_json(os.path.join(output_dir, "test_predictions.json"),
                       {"labels": prediction.label_ids, "predictions": test_predictions, "label_names": names})
    metrics.update(stopping)
    metrics["strategy"] = args.strategy.strategy

    # 9. save: the best model (restored by the preset), its processor, results, config;
    # then the diagnosis, model card and report read from those files; then the push.
    if cache is not None:
        cache.restore()  # the trained head back on the real backbone: a normal full checkpoint
        metrics["cached_features"] = True
    trainer.save_model(output_dir)
    if main:
        write_json(os.path.join(output_dir, "all_results.json"), metrics)
        embedded_data = not (args.data.dataset_name or args.data.train_file or dataset is not None)
        write_run_config(os.path.join(output_dir, "run_config.yaml"), {
            **args.to_dict(), "model_name_or_path": model_path, "push_to_hub": hub.push,
            "dataset_name": modality.DEFAULT_DATASET if embedded_data else args.data.dataset_name,
            "hub_model_id": hub.repo_id if hub.push else training.hub_model_id,
        })
        diagnosis = diagnose(load_history(output_dir), strategy=args.strategy.strategy, num_labels=len(names))
        write_diagnosis(output_dir, diagnosis)
        _log(format_diagnosis(diagnosis))
        build_model_card(output_dir)
        write_report_html(output_dir)
        if hub.push:
            _log(f"pushed to {push_output_dir(output_dir, hub.repo_id, hub.private, hub.token)}")
    return RunResult(metrics, trainer.model, output_dir, args, groups)


def train_classifier(modality: str, dataset=None, args: RunArgs | None = None, **kwargs: Any) -> RunResult:
    """Fine-tune a classifier: the same pipeline and arguments as the recipes.

    Args:
        modality: "text", "image" or "audio".
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
