"""Step 7's setup: the one builder of the run's `TLTrainer` (the main training and any phase
before it, such as LP-FT's linear probe), and the callbacks of the main training."""

from __future__ import annotations

import os
from typing import Any

from tl_hf.console import say
from tl_hf.pipeline.plan import Plan, trainer_arguments
from tl_hf.pipeline.steps import Features, Prepared


def build_trainer(
    model,
    plan: Plan,
    data: Prepared,
    features: Features,
    callbacks: list,
    *,
    strategy=None,
    options=None,
    batch_augment=None,
    timer=None,
    training=None,
    **training_changes: Any,
):
    """The `TLTrainer` of a run (or of a phase under another `strategy`), on its own copy of the
    plan's `TrainingArguments` (`training`, default a new one with `training_changes`): the
    columns transforms and cached features read are kept, evaluation batches are
    `--eval_batch_scale` times larger."""
    from tl_hf.training import metrics
    from tl_hf.training.callbacks import apply_phase_progress
    from tl_hf.training.trainer import TLTrainer

    speed = plan.args.speed
    training = training or trainer_arguments(plan, **training_changes)
    training.remove_unused_columns &= not (data.keep_raw_columns or features.cache is not None)
    training.per_device_eval_batch_size *= speed.eval_batch_scale
    trainer = TLTrainer(
        model=model,
        args=training,
        train_dataset=features.splits["train"],
        eval_dataset=features.splits["validation"],
        data_collator=features.collator,
        processing_class=data.processor,
        compute_metrics=metrics.compute_metrics,  # looked up now: the test drivers wrap it
        callbacks=callbacks,
        strategy=strategy or plan.strategy,
        options=options or plan.options,
        # inputs mixed where the backbone runs, stored features where it does not
        batch_augment=batch_augment
        if (features.cache is None) != getattr(batch_augment, "on_features", False)
        else None,
        test_time=_test_time(plan),
        timer=timer,
        speed=speed,
    )
    # the console's phase bars (or one line per evaluation) instead of the Trainer's output
    apply_phase_progress(trainer, plan.args.report.verbose)
    return trainer


def _test_time(plan: Plan):
    """The evaluation's test-time views (`--tta N`), or None."""
    if plan.tta_views is None:
        return None
    from functools import partial

    from tl_hf.augment.tta import view_logits

    n, flip = plan.tta_views
    return partial(view_logits, n=n, flip=flip)


def build_callbacks(plan: Plan, phases: list, resume_from: str | None) -> list:
    """The strategy's callbacks, the early-stopping preset's (none with patience 0) and the
    monitor (which keeps the live report.html, served on 127.0.0.1 with --monitor_port,
    records the phases trained before the main one, if any, and starts from the history saved
    in `resume_from`, the checkpoint a resumed run continues from).

    The strategy's come first: what they change in a step (a group's learning rate) is what
    the monitor then records."""
    from tl_hf.report.monitor import MonitorCallback
    from tl_hf.training.callbacks import build_early_stopping

    args, output_dir = plan.args, plan.args.training.output_dir
    stopping = args.stopping
    early_stopping = build_early_stopping(
        stopping.early_stopping_patience, stopping.early_stopping_threshold
    )
    # the curves are redrawn while drawing takes at most a tenth of the run's time (quick
    # epochs would otherwise spend more time drawing than training), and always at the end
    monitor = MonitorCallback(
        output_dir,
        early_stopping_patience=stopping.early_stopping_patience,
        title=f"tl-hf: {plan.display_name} ({os.path.basename(os.path.abspath(output_dir))})",
        draw_budget=0.1,
        resume_from=resume_from,
    )
    if phases:
        monitor.history["phases"] = list(phases)
    port = args.report.monitor_port
    if port and args.training.process_index == 0:
        from tl_hf.report.live import serve_output_dir

        serve_output_dir(output_dir, port)  # a daemon thread: it ends with the process
        say(f"live report: http://127.0.0.1:{port}/report.html")
    else:
        say(f"live report: {os.path.abspath(os.path.join(output_dir, 'report.html'))}")
    own = plan.strategy.callbacks(plan.options)
    return [*own, *(c for c in (early_stopping, monitor) if c is not None)]


def setup_trainer(model, plan: Plan, data, features, callbacks, timer, output):
    """The main training's Trainer: `callbacks` (the run's, the caller's), then the one that
    keeps the interrupt line current; resumed from `output.resume_from`; the batch-level
    augmentation; its trackers attached (--report_to tensorboard/trackio: in the folder, the
    learning rate of every group)."""
    from tl_hf.pipeline.steps import batch_augment_step
    from tl_hf.report.trackers import attach_trackers, prepare_tracker_args
    from tl_hf.training.callbacks import ProgressCallback

    training = trainer_arguments(plan)
    training.resume_from_checkpoint = output.resume_from
    prepare_tracker_args(training, plan.args.explicit)  # before trackio is imported
    trainer = build_trainer(
        model,
        plan,
        data,
        features,
        [*callbacks, ProgressCallback()],
        batch_augment=batch_augment_step(plan, data),
        timer=timer,
        training=training,
    )
    attach_trackers(trainer)
    return trainer
