"""What a run prints on the console: one progress bar per phase (data, features, training,
evaluation), one line per evaluation, the model-loading report condensed to one line when it
only says that the new head was initialised. `--verbose` shows every library message and
progress bar instead. Only the main process prints."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from transformers import TrainerCallback


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def say(message: str) -> None:
    """One `[tl-hf]` line on the main process."""
    if is_main_process():
        print(f"[tl-hf] {message}", flush=True)


def phase_bar(name: str, total: int | None, unit: str = "it", initial: int = 0):
    """The one progress bar of a phase (a disabled bar off the main process)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit=unit,
        dynamic_ncols=True,
        disable=not is_main_process(),
    )


@contextlib.contextmanager
def phase(name: str, total: int | None, unit: str = "it", initial: int = 0):
    """`phase_bar` for a block: closed at its end; wiped when the block raises (the error's
    one line is then the last thing on the console)."""
    bar = phase_bar(name, total, unit, initial)
    try:
        yield bar
    except BaseException:
        bar.leave = False
        bar.close()
        raise
    if bar.total and bar.n < bar.total:  # e.g. features read from a cache: the phase is done
        bar.update(bar.total - bar.n)
    bar.close()


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Hide the libraries' own progress bars (datasets' per-map bars, transformers' weight
    loading and shard writing) for the duration of a run, unless `verbose`."""
    if verbose:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_bars, hf_bars = (
        datasets.is_progress_bar_enabled(),
        hf_logging.is_progress_bar_enabled(),
    )
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_bars:
            datasets.enable_progress_bars()
        if hf_bars:
            hf_logging.enable_progress_bar()


class _HoldLoadReport(logging.Filter):
    """Holds back transformers' LOAD REPORT record so the caller can decide what to show."""

    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in str(record.msg):
            self.held.append(record)
            return False
        return True


@contextlib.contextmanager
def condensed_load_report(verbose: bool) -> Iterator[_HoldLoadReport]:
    """Around `from_pretrained(..., output_loading_info=True)`: the load report is held back;
    call `release_load_report` with the loading info afterwards."""
    hold = _HoldLoadReport()
    logger = logging.getLogger("transformers.modeling_utils")
    if not verbose:
        logger.addFilter(hold)
    try:
        yield hold
    finally:
        logger.removeFilter(hold)


def release_load_report(
    hold: _HoldLoadReport, unexpected: bool, new_parameters: set[str], model_name: str, model
) -> None:
    """One line when the report only lists newly initialised weights (missing or resized:
    the new head); the whole report when the checkpoint had weights the model did not use."""
    if not hold.held:
        return
    if unexpected:
        logger = logging.getLogger("transformers.modeling_utils")
        for record in hold.held:
            logger.handle(record)
        return
    new = sorted(new_parameters)
    shown = ", ".join(new[:4]) + (f" and {len(new) - 4} more" if len(new) > 4 else "")
    say(
        f"loaded {type(model).__name__} from {model_name}: new head initialised "
        f"({len(new)} tensors: {shown}; --verbose shows the full load report)"
    )


def _evaluation_line(metrics: dict, epoch) -> str:
    shown = [
        f"{k.removeprefix('eval_')} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, float)
        and k.startswith("eval_")
        and not k.endswith(("runtime", "per_second"))
    ]
    return f"[tl-hf] epoch {epoch:g} validation: " + "  ".join(shown)


class PhaseProgressCallback(TrainerCallback):
    """Replaces the Trainer's `ProgressCallback`: one `training` bar (the latest loss beside
    it, one line per evaluation, no nested evaluation bars), then one `evaluation` bar for
    everything evaluated after training (closed by `close_evaluation`)."""

    def __init__(self):
        self.training_bar = None
        self.evaluation_bar = None
        self._loaders: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
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

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is not None:
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
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None

    def close_evaluation(self) -> None:
        if self.evaluation_bar is not None:
            self.evaluation_bar.close()
            self.evaluation_bar = None


def apply_phase_progress(trainer, verbose: bool) -> PhaseProgressCallback | None:
    """Swap the Trainer's progress bars for the phase bars (not with `verbose`)."""
    from transformers.trainer_callback import ProgressCallback

    if verbose or trainer.args.disable_tqdm:
        return None
    trainer.remove_callback(ProgressCallback)
    callback = PhaseProgressCallback()
    trainer.add_callback(callback)
    return callback
