"""What a run prints on the console: one progress bar per phase (data, features, training,
evaluation), one line per evaluation, the model-loading report condensed to one line when it
only says that the new head was initialised. `--verbose` shows every library message and
progress bar instead. Only the main process prints."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def say(message: str, who: str = "tl-hf", every_rank: bool = False) -> None:
    """One `[tl-hf]` line on the main process (`who`: the lab's and the playbook's own lines
    say `[tl-hf lab]`, `[tl-hf playbook]`; `every_rank`: a line only this rank knows, such as
    a file it skipped). The one logging path of tl-hf."""
    if every_rank or is_main_process():
        print(f"[{who}] {message}", flush=True)


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
    hold: _HoldLoadReport, unexpected: list[str], new_parameters: set[str], model_name: str, model
) -> None:
    """One line when the report only lists newly initialised weights (missing or resized:
    the new head), or besides them only the decoder of an encoder-decoder checkpoint that an
    encoder-only class leaves unused (Whisper read by `WhisperForAudioClassification`); the
    whole report when the checkpoint had other weights the model did not use."""
    if not hold.held:
        return
    decoder = [k for k in unexpected if ".decoder." in f".{k}"]
    has_decoder = decoder and any(n.split(".")[-1] == "decoder" for n, _ in model.named_modules())
    if len(decoder) < len(unexpected) or has_decoder:
        logger = logging.getLogger("transformers.modeling_utils")
        for record in hold.held:
            logger.handle(record)
        return
    new = sorted(new_parameters)
    shown = ", ".join(new[:4]) + (f" and {len(new) - 4} more" if len(new) > 4 else "")
    unused = f"; its decoder ({len(decoder)} tensors) is not used" if decoder else ""
    say(
        f"loaded {type(model).__name__} from {model_name}: new head initialised "
        f"({len(new)} tensors: {shown}{unused}; --verbose shows the full load report)"
    )
