"""Checkpoints beside the embedded defaults that a candidate list names by a short name (the
model ladder of `tl-hf select`). Filled in by the packages that ship them."""

from __future__ import annotations


def ladder_folder(name: str) -> str | None:
    """The local folder of the ladder checkpoint called `name`, or None when `name` is not one."""
    return None
