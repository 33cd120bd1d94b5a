"""The callbacks of a run: the early-stopping preset (and what it reports), where the run is
(for the one line an interrupted run prints), and the console's progress: one bar per phase,
one line per evaluation."""

from __future__ import annotations

from typing import Any

from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

from tl_hf.console import phase_bar


def build_early_stopping(patience: int, threshold: float) -> EarlyStoppingCallback | None:
    """The preset's callback (patience counted in evaluations); None when patience is 0."""
    if patience <= 0:
        return None
    return EarlyStoppingCallback(
        early_stopping_patience=patience, early_stopping_threshold=threshold
    )


def find_early_stopping(trainer: Trainer) -> EarlyStoppingCallback | None:
    """The trainer's early-stopping callback: after a resume it is the one restored from the
    checkpoint (patience counter included), not the one the trainer was given."""
    return next(
        (c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)),
        None,
    )


class ProgressCallback(TrainerCallback):
    """Keeps `tl_hf.output.interrupt.PROGRESS` at the current epoch and step, so an interrupted run
    can say where it stopped."""

    def on_step_end(self, args, state, control, **kwargs):
        from tl_hf.output.interrupt import PROGRESS

        PROGRESS.update(stage="training", epoch=state.epoch or 0.0, step=state.global_step)

    def on_epoch_end(self, args, state, control, **kwargs):
        from tl_hf.output.interrupt import PROGRESS

        PROGRESS["stage"] = "evaluation and checkpointing"

    def on_save(self, args, state, control, **kwargs):
        from tl_hf.output.interrupt import PROGRESS

        PROGRESS["stage"] = "training"


def summarize_early_stopping(
    trainer: Trainer, callback: EarlyStoppingCallback | None
) -> dict[str, Any]:
    """Where the run stopped and which epoch won (from the trainer state)."""
    state, args = trainer.state, trainer.args
    evals = [e for e in state.log_history if "eval_loss" in e or args.metric_for_best_model in e]
    best_step = getattr(state, "best_global_step", None)
    best_epoch = next((e.get("epoch") for e in evals if e.get("step") == best_step), None)
    stopped_epoch = evals[-1]["epoch"] if evals else state.epoch
    early_stopped = bool(
        callback is not None
        and callback.early_stopping_patience_counter >= callback.early_stopping_patience
    )

    def as_epoch(x):
        return (
            None
            if x is None
            else (int(round(x)) if abs(x - round(x)) < 1e-6 else round(float(x), 3))
        )

    return {
        "best_epoch": as_epoch(best_epoch),
        "stopped_epoch": as_epoch(stopped_epoch),
        "early_stopped": early_stopped,
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": state.best_metric,
        "metric_for_best_model": args.metric_for_best_model,
        "early_stopping_patience": callback.early_stopping_patience if callback else 0,
    }


# recorded with every evaluation (the history, calibration.json), not worth a place on its line
_NOT_ON_THE_LINE = ("runtime", "per_second", "temperature", "_ece")


def _evaluation_line(metrics: dict, epoch) -> str:
    shown = [
        f"{k.removeprefix('eval_')} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, float) and k.startswith("eval_") and not k.endswith(_NOT_ON_THE_LINE)
    ]
    return f"[tl-hf] epoch {epoch:g} validation: " + "  ".join(shown)


class PhaseProgressCallback(TrainerCallback):
    """Replaces the Trainer's progress output (`ProgressCallback`'s bars, or with
    `--disable_tqdm` `PrinterCallback`'s raw log dicts): one `training` bar (the latest loss
    beside it, one line per evaluation, no nested evaluation bars), then one `evaluation` bar
    for everything evaluated after training (closed by `close_evaluation`). With `bars=False`
    (the lab's trials): the evaluation lines only."""

    def __init__(self, bars: bool = True):
        self.bars = bars
        self.training_bar = None
        self.evaluation_bar = None
        self._loaders: set[int] = set()
        self._training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True
        if state.is_world_process_zero and self.bars:
            self.training_bar = phase_bar("training", state.max_steps, unit="step")
        self._step = state.global_step
        if self.training_bar is not None:
            self.training_bar.update(self._step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.update(state.global_step - self._step)
            self._step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.training_bar is not None and metrics:
            self.training_bar.write(_evaluation_line(metrics, state.epoch or 0))
        elif not self.bars and metrics and state.is_world_process_zero and self._training:
            print(_evaluation_line(metrics, state.epoch or 0), flush=True)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is not None or not self.bars:
            return  # evaluations during training: their result line is enough
        if eval_dataloader is not None and id(eval_dataloader) not in self._loaders:
            self._loaders.add(id(eval_dataloader))
            if self.evaluation_bar is None:
                self.evaluation_bar = phase_bar("evaluation", len(eval_dataloader), "batch")
            else:  # the test split after the validation split: the same bar grows
                self.evaluation_bar.total += len(eval_dataloader)
                self.evaluation_bar.refresh()
        if self.evaluation_bar is None:
            return
        self.evaluation_bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None

    def close_evaluation(self) -> None:
        if self.evaluation_bar is not None:
            self.evaluation_bar.close()
            self.evaluation_bar = None


def apply_phase_progress(trainer, verbose: bool) -> PhaseProgressCallback | None:
    """Swap the Trainer's progress output for the phase bars, or, with `--disable_tqdm`, for
    one line per evaluation instead of raw log dicts (not with `verbose`)."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as TrainerProgress

    if verbose:
        return None
    quiet = trainer.args.disable_tqdm
    trainer.remove_callback(PrinterCallback if quiet else TrainerProgress)
    callback = PhaseProgressCallback(bars=not quiet)
    trainer.add_callback(callback)
    return callback


def close_evaluation_bar(trainer) -> None:
    """Close the evaluation bar of the trainer's `PhaseProgressCallback`, if it has one."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, PhaseProgressCallback):
            callback.close_evaluation()
