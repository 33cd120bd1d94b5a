"""What every recipe's `main()` does: parse flags, run the pipeline, print the outcome.
User errors end with one readable line and exit status 2, not a traceback."""

from __future__ import annotations

import sys


def _print_summary(result) -> None:
    m = result.metrics
    lines = [
        f"best epoch {m.get('best_epoch')} of {m.get('stopped_epoch')}"
        + (" (early stopped)" if m.get("early_stopped") else ""),
        f"validation: accuracy {m.get('eval_accuracy', float('nan')):.4f}  "
        f"macro-F1 {m.get('eval_f1', float('nan')):.4f}  loss {m.get('eval_loss', float('nan')):.4f}",
    ]
    if "test_accuracy" in m:
        lines.append(
            f"test: accuracy {m['test_accuracy']:.4f}  macro-F1 {m['test_f1']:.4f}  "
            f"({m['test_samples']} examples)"
        )
        width = max(len(n) for n in m["test_per_class"])
        for name, row in m["test_per_class"].items():
            lines.append(
                f"  {name:<{width}}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                f"f1 {row['f1']:.3f}  n={row['support']}"
            )
    lines.append(f"model saved to {result.output_dir}")
    print("\n".join(f"[tl-hf] {line}" for line in lines), flush=True)


# How a full disk (or a file-size limit) shows through the writers that are not Python's:
# safetensors (Rust) and torch.save (C++) raise their own exception types.
DISK_FULL_TEXT = ("No space left", "File too large", "os error 28", "os error 27", "Disk quota")
TORCH_WRITE_TEXT = ("file write failed", "unexpected pos")


def _write_error(err: BaseException) -> str | None:
    """One line for a write that failed for a reason the user fixes (full disk, read-only or
    forbidden folder); None for other errors, which keep their traceback."""
    import errno

    from tl_hf.output.interrupt import PROGRESS

    if isinstance(err, OSError) and err.errno in (
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
    ):
        where = f" {err.filename}" if err.filename else ""
        return (
            f"cannot write{where} ({err.strerror}): choose a writable folder "
            "(--output_dir, --cache_dir, HF_HOME)"
        )
    text = str(err)
    full = (
        isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    ) or (
        any(t in text for t in DISK_FULL_TEXT)
        or ("inline_container" in text and any(t in text for t in TORCH_WRITE_TEXT))
    )
    if not full:
        return None
    what = f"writing {err.filename}" if getattr(err, "filename", None) else PROGRESS.get("stage")
    return (
        f"the disk is full (or a file size limit was hit) during {what or 'the run'}: free some "
        "space or choose a folder on another disk (--output_dir, --cache_dir, HF_HOME); "
        "the last complete checkpoint, if any, is intact"
    )


def _close_progress_bars() -> str:
    """Close the open progress bars (else they redraw over the message that follows);
    returns the line break that puts that message on a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:
        return ""
    bars = list(getattr(tqdm, "_instances", ()))
    for bar in bars:
        bar.close()
    return "\n" if bars else ""


def main(modality: str, argv: list[str] | None = None) -> int:
    """Run a recipe; returns the exit status (0, 2 for a user error, 130/143 when stopped)."""
    import os

    from tl_hf.config import parse_args
    from tl_hf.errors import UserError
    from tl_hf.output.interrupt import (
        Terminated,
        install_sigterm_handler,
        lost_peer_message,
        stopped_message,
    )

    argv = list(sys.argv[1:] if argv is None else argv)
    install_sigterm_handler()
    try:
        args = parse_args(modality, argv)
        from tl_hf.pipeline import run

        result = run(args)
    except UserError as err:  # also from inside training (a file that stopped decoding)
        print(f"{_close_progress_bars()}error: {err}", file=sys.stderr, flush=True)
        return 2
    except Exception as err:  # a lost rank, or a write failure (safetensors' is a bare Exception)
        lost = lost_peer_message(err, modality, argv)
        if lost is not None:
            if int(os.environ.get("LOCAL_RANK", "0")) == 0:
                print(f"{_close_progress_bars()}error: {lost}", file=sys.stderr, flush=True)
            return 1
        message = _write_error(err)
        if message is None:
            raise
        print(f"{_close_progress_bars()}error: {message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as err:
        name, code = ("SIGTERM", 143) if isinstance(err, Terminated) else ("SIGINT", 130)
        if int(os.environ.get("RANK", "0")) == 0:
            start = _close_progress_bars()
            print(start + stopped_message(name, modality, argv), file=sys.stderr, flush=True)
        return code
    if result.args.training.process_index == 0:
        _print_summary(result)
    return 0
