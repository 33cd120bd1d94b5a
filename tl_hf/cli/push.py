"""Push an existing output folder to the Hub: `python -m tl_hf.cli.push OUTPUT_DIR --hub_model_id ID`.

The repo id defaults to `hub_model_id` in the folder's `run_config.yaml`. The token comes
from `HF_TOKEN` or `hf auth login` (there is deliberately no token flag: a token typed on
a command line ends up in shell history and process lists). Exit status 2 with one line
for a user error, 1 with one line when the Hub keeps failing, 0 after a push.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tl_hf.errors import UserError


def _repo_from_run_config(output_dir: Path) -> str | None:
    path = output_dir / "run_config.yaml"
    if not path.is_file():
        return None
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return data.get("hub_model_id") if isinstance(data, dict) else None


def main(argv: list[str] | None = None, prog: str = "python -m tl_hf.cli.push") -> int:
    """Parse the command line and push; returns the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="the --output_dir of a finished run")
    parser.add_argument("--hub_model_id", default=None, help="NAMESPACE/NAME of the model repo")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to commit to")
    parser.add_argument("--commit_message", default=None)
    args = parser.parse_args(argv)

    from tl_hf.output.hub import DEFAULT_COMMIT_MESSAGE, PushError, push_output_dir

    try:
        output_dir = Path(args.output_dir)
        if not output_dir.is_dir():
            raise UserError(
                f"output folder {output_dir} does not exist: give the --output_dir of a finished run"
            )
        repo_id = args.hub_model_id or _repo_from_run_config(output_dir)
        if not repo_id:
            raise UserError("no Hub repo given: pass --hub_model_id NAMESPACE/NAME")
        url = push_output_dir(
            output_dir,
            repo_id,
            private=True if args.private else None,
            revision=args.revision,
            commit_message=args.commit_message or DEFAULT_COMMIT_MESSAGE,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
