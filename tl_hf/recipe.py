"""What a recipe script calls: `sys.exit(main("text"))` (re-exports `tl_hf.cli.recipe`)."""

from tl_hf.cli.recipe import main

__all__ = ["main"]
