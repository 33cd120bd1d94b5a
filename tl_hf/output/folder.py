"""The output folder's state: finished, unfinished (checkpoints, each complete or not), what a
resumed run continues from; checked before a run starts (a finished run is not overwritten
unless asked, an unfinished one is resumed or replaced only when asked), the folder taken for
writing through `tl_hf.output.ownership`."""

from __future__ import annotations

import json
import os
import re

import tl_hf.output.atomic as atomic
from tl_hf.errors import UserError
from tl_hf.output.names import FINISHED_MARKER, HISTORY_FILE, MONITOR_STATE
from tl_hf.output.ownership import open_output_folder

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _weights_complete(folder: str) -> bool:
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return atomic.safetensors_complete(single)
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index) as f:
                shards = set(json.load(f)["weight_map"].values())
        except (OSError, ValueError, KeyError):
            return False
        return all(atomic.safetensors_complete(os.path.join(folder, s)) for s in shards)
    return False


def checkpoint_problem(folder: str, need_monitor: bool = False) -> str | None:
    """Why `folder` is not a complete Trainer checkpoint, or None when it is: its
    `trainer_state.json` parses and its weights are as long as their headers say (a kill
    while saving leaves one or the other missing or short). With `need_monitor`, tl-hf's
    history must be there too (it is written last, after the Trainer's files)."""
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            state = json.load(f)
        if "global_step" not in state:
            return "its trainer_state.json has no global_step"
    except (OSError, ValueError):
        return "it has no readable trainer_state.json"
    if not _weights_complete(folder):
        return "its model weights are missing or truncated"
    if need_monitor and not os.path.isfile(os.path.join(folder, MONITOR_STATE)):
        return f"it has no {MONITOR_STATE}"
    return None


def list_checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders of `output_dir`, oldest step first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), e) for e in os.listdir(output_dir) if (m := _CHECKPOINT.match(e))]
    return [os.path.join(output_dir, e) for _, e in sorted(found)]


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The checkpoint of the highest step that `checkpoint_problem` finds whole."""
    for folder in reversed(list_checkpoints(output_dir)):
        if checkpoint_problem(folder, need_monitor=True) is None:
            return folder
    return None


def checkpoint_epoch(folder: str) -> float | None:
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            return json.load(f).get("epoch")
    except (OSError, ValueError):
        return None


def holds_unfinished_run(output_dir: str) -> bool:
    """True when a run started in `output_dir` and did not finish (checkpoints or a
    history, no finished marker)."""
    if not os.path.isdir(output_dir) or os.path.exists(os.path.join(output_dir, FINISHED_MARKER)):
        return False
    return bool(list_checkpoints(output_dir)) or os.path.exists(
        os.path.join(output_dir, HISTORY_FILE)
    )


def check_writable(output_dir: str) -> None:
    """The output folder (or the nearest folder above it that exists) accepts files: a
    read-only or forbidden place fails here, before anything is loaded, not at the end."""
    import tempfile

    parent = os.path.abspath(output_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:
        if not os.path.isdir(parent):
            raise NotADirectoryError(f"{parent} is a file")
        fd, probe = tempfile.mkstemp(prefix=".tl_hf_probe", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UserError(
            f"cannot write to --output_dir {output_dir} ({err.strerror or err}): choose a "
            "writable folder"
        ) from err


def check_output_dir(
    output_dir: str, overwrite: bool, explicit: bool, resume: bool = False
) -> str | None:
    """Check the output folder before anything is loaded; returns the checkpoint to resume
    from (with `resume`), or None to start afresh.

    A finished run is refused unless `overwrite` (the default folder, no `--output_dir`
    given, is reused: rerunning the default is the expected way to reproduce it). An
    unfinished run (killed, interrupted) is refused unless `resume` or `overwrite` says
    which of the two the user wants.
    """
    check_writable(output_dir)
    finished = os.path.exists(os.path.join(output_dir, FINISHED_MARKER))
    if finished and resume:
        raise UserError(
            f"--output_dir {output_dir} holds a finished run, there is nothing to resume: "
            "drop --resume, or pass --overwrite_output_dir to train again"
        )
    if finished and explicit and not overwrite:
        raise UserError(
            f"--output_dir {output_dir} already holds a finished run: choose another folder "
            "or pass --overwrite_output_dir"
        )
    if not holds_unfinished_run(output_dir) or overwrite:
        return None
    latest = latest_complete_checkpoint(output_dir)
    if resume:
        return latest
    where = (
        f"last complete checkpoint {os.path.basename(latest)}, epoch {checkpoint_epoch(latest):g}"
        if latest
        else "no complete checkpoint yet"
    )
    raise UserError(
        f"--output_dir {output_dir} holds an unfinished run ({where}): pass --resume to continue "
        "it, or --overwrite_output_dir to start over"
    )


def resolve_resume(training_args, output_args, explicit_output_dir: bool) -> str | None:
    """Check the output folder (see `check_output_dir`) and return the checkpoint the run
    continues from: `--resume_from_checkpoint PATH` when it is complete, the latest complete
    one with `--resume`, else None."""
    given = training_args.resume_from_checkpoint
    latest = check_output_dir(
        training_args.output_dir,
        output_args.overwrite_output_dir,
        explicit_output_dir,
        output_args.resume or bool(given),
    )
    if not given:
        return latest
    problem = checkpoint_problem(given)
    if problem:
        raise UserError(
            f"--resume_from_checkpoint {given} cannot be resumed ({problem}): give a complete "
            "checkpoint-N folder, or pass --resume to pick the latest complete one"
        )
    return given


def input_paths(data_args) -> list[str]:
    """The run's own input files and folders: never inside what a run removes."""
    paths = [data_args.train_file, data_args.validation_file, data_args.test_file]
    if data_args.dataset_name and os.path.exists(data_args.dataset_name):
        paths.append(data_args.dataset_name)
    return [p for p in paths if p]


def open_run_folder(training_args, output_args, explicit_output_dir: bool, log):
    """Take the output folder for this run (main process: its lock and manifest, the user's
    files checked, `tl_hf.output.ownership`), then check what it holds (`check_output_dir`).
    Returns (the `OutputFolder`, None on other ranks; the checkpoint to resume from or None).
    Every rank gets the main process's answer, or its error."""
    from accelerate.utils import broadcast_object_list

    folder, answer = None, [None, None]
    if training_args.process_index == 0:
        try:
            check_writable(training_args.output_dir)
            folder = open_output_folder(
                training_args.output_dir,
                allow_other_files=output_args.allow_other_files,
                log=log,
            )
            try:
                answer[1] = resolve_resume(training_args, output_args, explicit_output_dir)
            except BaseException:
                folder.release()
                raise
        except UserError as err:
            answer[0] = str(err)
            if training_args.world_size <= 1:
                raise
    if training_args.world_size > 1:
        broadcast_object_list(answer, from_process=0)
    if answer[0] is not None:
        raise UserError(answer[0])
    return folder, answer[1]
