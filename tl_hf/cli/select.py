"""`tl-hf select MODALITY [--candidates A B C] [data flags]`: rank candidate checkpoints (none
named: the modality's installed model ladder, `tl_hf.embedded.ladder`) on the user's data (frozen features: linear-probe accuracy, LogME, size, forward time; the rule is in
docs/select.md) and write `selection.json` to `--output_dir` (default outputs/select_MODALITY).
Every recipe flag is accepted; the data flags and batch sizes are the ones that matter."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    """Run the selection; returns the exit status (2 with one line for a user error)."""
    from tl_hf.errors import UserError

    if not argv or argv[0].startswith("-"):
        from tl_hf.modalities.base import modality_names

        names = ", ".join(modality_names())
        print(f"error: tl-hf select needs a modality first: one of {names}", file=sys.stderr)
        return 2
    modality, rest = argv[0], argv[1:]
    try:
        from tl_hf.config import parse_args
        from tl_hf.console import quiet_libraries, say
        from tl_hf.select.api import select_with_args, write_selection

        args = parse_args(modality, rest)  # no --candidates: the installed model ladder
        output_dir = (
            args.training.output_dir
            if "output_dir" in args.explicit
            else os.path.join("outputs", f"select_{modality}")
        )
        with quiet_libraries(args.report.verbose):
            selection = select_with_args(args)
        path = write_selection(selection, output_dir)
    except UserError as err:
        from tl_hf.cli.recipe import _close_progress_bars

        print(f"{_close_progress_bars()}error: {err}", file=sys.stderr, flush=True)
        return 2
    say(f"chosen: {selection.chosen} ({selection.seconds:.1f} s); the ranking is in {path}")
    return 0
