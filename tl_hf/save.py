"""Save: the output folder. Checked before a run starts (a finished run is not overwritten
unless asked), written by the main process only at the end."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from tl_hf.config import UserError

FINISHED_MARKER = "all_results.json"


def check_output_dir(output_dir: str, overwrite: bool, explicit: bool) -> None:
    """Refuse an output folder that holds a finished run, unless overwriting was asked for.

    The default folder (no `--output_dir` given) is reused: rerunning the default is the
    expected way to reproduce it.
    """
    if not os.path.exists(os.path.join(output_dir, FINISHED_MARKER)):
        return
    if explicit and not overwrite:
        raise UserError(
            f"--output_dir {output_dir} already holds a finished run: choose another folder "
            "or pass --overwrite_output_dir"
        )


def clear_output_dir(output_dir: str) -> None:
    """Remove a previous run's files (main process only, after all checks passed)."""
    if os.path.isdir(output_dir) and os.path.exists(os.path.join(output_dir, FINISHED_MARKER)):
        for entry in os.listdir(output_dir):
            path = os.path.join(output_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _jsonable(value: Any) -> Any:
    import enum

    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        return _jsonable(value.tolist())
    return str(value)


def write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(data), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def write_run_config(path: str, config: dict[str, Any]) -> None:
    """Every resolved argument as YAML: `--config run_config.yaml` reproduces the run."""
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump(_jsonable(config), f, sort_keys=True)
