"""Steps 7 to 9 of the flow: train, evaluate the restored best model, save it, and report:
the run config of what ran, the diagnosis, the model card, report.html, the results (the
finished marker, written last) and the push."""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

from tl_hf.config import RunArgs
from tl_hf.console import say
from tl_hf.modalities.base import with_rules
from tl_hf.pipeline.plan import Plan
from tl_hf.pipeline.steps import Features, Prepared


def train_step(trainer, features: Features, plan: Plan):
    """Step 7: `trainer.train()`, or, with cached features on one process, the head's tight
    loop over device-resident feature tensors (same optimizer, schedule, evaluation, early
    stopping and checkpoints; see `tl_hf.training.head_loop`)."""
    if features.cache is not None and plan.args.speed.fast_head:
        from tl_hf.training.head_loop import head_loop_blocker, train_head_on_features

        reason = head_loop_blocker(trainer)
        if reason is None:
            return train_head_on_features(trainer, features.cache.features)
        say(f"head trains through the Trainer's loop ({reason})")
    return trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)


def evaluate_step(trainer, train_result, features: Features, names: list[str]) -> dict:
    """Step 8: training figures, where early stopping stopped, then the restored best model on
    validation and test. (A resumed Trainer replaces the early-stopping callback by one restored
    from the checkpoint: it is looked up here, once.)"""
    import torch

    from tl_hf.output.names import PREDICTIONS_FILE
    from tl_hf.output.save import write_json
    from tl_hf.training.callbacks import (
        close_evaluation_bar,
        find_early_stopping,
        summarize_early_stopping,
    )
    from tl_hf.training.metrics import per_class_report

    splits = features.splits
    # before evaluate() ticks the callback
    stopping = summarize_early_stopping(trainer, find_early_stopping(trainer))
    metrics: dict[str, Any] = {
        f"train_{k}" if not k.startswith("train_") else k: v
        for k, v in train_result.metrics.items()
    }
    metrics["train_samples"] = len(splits["train"])
    if torch.cuda.is_available():  # this rank's peak, training included (bench/gpu_check.sh)
        metrics["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    metrics.update(recorded_evaluation(trainer) or trainer.evaluate(metric_key_prefix="eval"))
    metrics["eval_samples"] = len(splits["validation"])
    prediction = None
    if "test" in splits:
        prediction = trainer.predict(splits["test"], metric_key_prefix="test")
        metrics.update(prediction.metrics)
        metrics["test_samples"] = len(splits["test"])
        test_predictions = prediction.predictions.argmax(-1)
        metrics["test_per_class"] = per_class_report(test_predictions, prediction.label_ids, names)
        if trainer.args.process_index == 0:
            write_json(
                os.path.join(trainer.args.output_dir, PREDICTIONS_FILE),
                {
                    "labels": prediction.label_ids,
                    "predictions": test_predictions,
                    "label_names": names,
                },
            )
    _calibration_step(trainer, metrics, prediction)
    metrics.update(stopping)
    metrics["strategy"] = trainer.strategy.name
    close_evaluation_bar(trainer)
    if features.cache is not None:
        features.cache.restore()  # the trained head back on the real backbone: a full model
        metrics["cached_features"] = True
    return metrics


def _calibration_step(trainer, metrics: dict, prediction) -> None:
    """Step 8b: the validation temperature and the calibration error before and after it
    (`calibration.json`, `tl_hf.infer.calibrate`)."""
    from tl_hf.infer.calibrate import calibration_record, write_calibration

    logits = labels = None
    if prediction is not None:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = prediction.label_ids
    record = calibration_record(metrics, logits, labels)
    if record is not None and trainer.args.process_index == 0:
        write_calibration(trainer.args.output_dir, record)


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


def save_model_step(trainer, plan: Plan) -> None:
    """Step 9a (every rank): the final model as the strategy saves it (default: the Trainer's
    `save_model`, file by file atomically; LoRA writes its adapter and then the merged model)."""
    from tl_hf.output.save import save_model_atomically

    if plan.strategy.save is None:
        save_model_atomically(trainer, trainer.args.output_dir)  # each file whole or absent
    else:
        plan.strategy.save(trainer, plan.options, trainer.args.output_dir)


def what_ran(plan: Plan, trainer, pooling: str, cached: bool, rules=()) -> RunArgs:
    """The arguments as the run used them (`run_config.yaml`, `RunResult.args`): the user's,
    with what the run decided (the data settings chosen from the data, `rules`; the pooling
    the head reads, whether features were cached, the Trainer's arguments: columns kept, Hub
    settings taken out, tracker names), except the evaluation batch, recorded as the user gave
    it (`--eval_batch_scale` applies it again)."""
    args = with_rules(plan.args, rules)
    training = copy.copy(trainer.args)
    training.per_device_eval_batch_size = plan.training_args.per_device_eval_batch_size
    return dataclasses.replace(
        args,
        model=dataclasses.replace(args.model, pooling=pooling),
        strategy=args.strategy.replace(cache_features=cached),
        training=training,
    )


def report_step(ran: RunArgs, plan: Plan, trainer, metrics: dict, data: Prepared, dataset, timer):
    """Step 9b (main process): the files of the report (`save_and_report`), then the final
    metrics and the diagnosis to the trackers (--report_to)."""
    from tl_hf.report import format_diagnosis
    from tl_hf.report.trackers import log_final_to_trackers

    if ran.training.process_index == 0:
        diagnosis = save_and_report(ran, plan, metrics, data, dataset, timer)
        log_final_to_trackers(trainer, metrics, format_diagnosis(diagnosis))


def save_and_report(ran: RunArgs, plan: Plan, metrics: dict, data: Prepared, dataset, timer):
    """Step 9 (main process): the run config of what ran, the diagnosis, the model card and
    report, then the results (`all_results.json`, the finished marker: written last, so a
    folder that has it is complete), then the push. Returns the diagnosis."""
    from tl_hf.output.hub import push_output_dir
    from tl_hf.output.names import FINISHED_MARKER, TIMINGS_FILE
    from tl_hf.output.save import jsonable, write_json
    from tl_hf.report import (
        build_model_card,
        diagnose,
        format_diagnosis,
        load_history,
        write_diagnosis,
        write_report_html,
    )
    from tl_hf.report.share import shareable

    output_dir, hub = ran.training.output_dir, plan.hub
    phase = timer.phase
    # pushed beside the card: local paths are named by their last component (share.py)
    results = shareable(jsonable(metrics))
    with phase("report: run config"):
        write_run_config_step(ran, plan, dataset, data.rules)
    with phase("report: diagnosis"):
        history = load_history(output_dir)
        diagnosis = diagnose(
            history, strategy=ran.strategy.strategy, num_labels=len(data.label_names)
        )
        write_diagnosis(output_dir, diagnosis)
        say(format_diagnosis(diagnosis))
    with phase("report: model card"):
        build_model_card(output_dir, results=results)
    with phase("report: report.html"):
        write_report_html(output_dir, results=results)
    if ran.speed.profile:
        write_json(os.path.join(output_dir, TIMINGS_FILE), timer.as_dict())
        say("where the time went (--profile):\n" + timer.table())
    write_json(os.path.join(output_dir, FINISHED_MARKER), results)
    if hub.push:
        say(f"pushed to {push_output_dir(output_dir, hub.repo_id, hub.private, hub.token)}")
    return diagnosis


def write_run_config_step(ran: RunArgs, plan: Plan, dataset=None, rules=()) -> None:
    """`run_config.yaml`: what ran, enough to reproduce it (from scratch, not its resumption),
    and the settings chosen from the data with the reason (`rules_from_data`)."""
    from pathlib import Path

    from tl_hf.output.names import RUN_CONFIG_FILE, SELECTION_FILE
    from tl_hf.output.save import write_run_config
    from tl_hf.report.card_sections import selection_summary
    from tl_hf.report.folder import read_json
    from tl_hf.report.share import reproduce_command, shareable

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
    if rules:
        config["rules_from_data"] = [rule.line for rule in rules]
    selection = os.path.join(output_dir, SELECTION_FILE)
    if ran.model.candidates and os.path.isfile(selection):  # the ranking that chose the model
        config["selection"] = selection_summary(read_json(Path(selection)))
    config = shareable(config)
    config["command"] = reproduce_command(ran.modality, config, ran.explicit)
    write_run_config(os.path.join(output_dir, RUN_CONFIG_FILE), config)
