"""The `tl-hf` command and the recipes' entry point (re-exports only)."""

from tl_hf.cli.main import main

__all__ = ["main"]
