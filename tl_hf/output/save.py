"""Writing a run's files: JSON and YAML made safe to dump, and the final model saved into a
staging folder and moved in file by file (each whole or absent), claimed in the folder's
manifest and never over a file of the user's (`tl_hf.output.ownership`)."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

import tl_hf.output.atomic as atomic
from tl_hf.output.names import STAGING_DIR
from tl_hf.output.ownership import claim, refuse_overwriting_other


def jsonable(value: Any) -> Any:
    import enum

    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        return jsonable(value.tolist())
    return str(value)


def write_json(path: str, data: Any) -> None:
    atomic.write_json(path, jsonable(data))


def write_run_config(path: str, config: dict[str, Any]) -> None:
    """Every resolved argument as YAML: `--config run_config.yaml` reproduces the run."""
    atomic.write_yaml(path, jsonable(config))


def _move_in(staging: str, output_dir: str) -> None:
    """Move a staged save into `output_dir` (claimed in its manifest first, and never over a
    file of the user's)."""
    names = os.listdir(staging)
    refuse_overwriting_other(output_dir, names)
    claim(output_dir, names)
    atomic.move_files_into(staging, output_dir)


@contextlib.contextmanager
def staged_into(output_dir: str):
    """A temporary folder inside `output_dir` (made afresh: an interrupted save may have left
    one) whose files are moved into `output_dir` by atomic renames when the block ends without
    an error: each file there is then whole or absent. One process writes."""
    staging = os.path.join(output_dir, STAGING_DIR)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    yield staging
    _move_in(staging, output_dir)


def save_model_atomically(trainer, output_dir: str) -> None:
    """The best model and its processor into `output_dir`, each file whole or absent: saved to
    a temporary folder inside it, then moved in file by file with atomic renames."""
    from accelerate import PartialState

    staging = os.path.join(output_dir, STAGING_DIR)
    if trainer.args.process_index == 0:  # what an interrupted save left
        shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(staging)  # every rank: FSDP/DeepSpeed gather the weights here
    if trainer.args.process_index == 0:
        _move_in(staging, output_dir)
    PartialState().wait_for_everyone()
