"""Ctrl-C and SIGTERM: stop with one line that says where the run stopped and the exact
command that resumes it, and exit 130 (SIGINT) or 143 (SIGTERM), as shells expect.

The pipeline records where it is in `PROGRESS` (a step name, then the epoch and optimizer
step from `tl_hf.training.trainer.ProgressCallback`); the recipe turns the interrupt into the message.
Checkpoints are untouched: the last complete one (see `tl_hf.output.folder.latest_complete_checkpoint`)
is what `--resume` continues from.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from typing import Any

# Where the current run is; reset by `start_run`.
PROGRESS: dict[str, Any] = {}
# `accelerate launch` run as a module (`tl_hf.cli.launch.accelerate_launch`): a resume
# command names it as the user knows it, `accelerate launch`
LAUNCH_MODULE = "accelerate.commands.launch"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same cleanup runs (a KeyboardInterrupt is not caught
    by the `except Exception` clauses of the libraries underneath)."""


def start_run(output_dir: str) -> None:
    PROGRESS.clear()
    PROGRESS.update(output_dir=output_dir, stage="configuration")


def set_stage(stage: str) -> None:
    PROGRESS["stage"] = stage


def _raise_terminated(signum, frame):
    raise Terminated()


def install_sigterm_handler() -> None:
    """SIGTERM raises `Terminated` (main thread only: handlers cannot be set elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def resume_command(modality: str, argv: list[str]) -> str:
    """The command line that continues this run: the original one with `--resume` (and
    without `--overwrite_output_dir` or `--resume_from_checkpoint`, which conflict with it)."""
    script, before = os.path.join("recipes", f"{modality}_classify.py"), []
    if sys.argv and sys.argv[0].endswith(".py"):  # run as a script: its own command line
        script = sys.argv[0]
        if len(sys.argv) > len(argv) and sys.argv[len(sys.argv) - len(argv) :] == argv:
            before = sys.argv[1 : len(sys.argv) - len(argv)]  # a script's own leading args
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--overwrite_output_dir", "--resume") or arg.startswith(
            ("--overwrite_output_dir=", "--resume=", "--resume_from_checkpoint=")
        ):
            continue
        if arg == "--resume_from_checkpoint":
            skip = True
            continue
        kept.append(arg)
    launcher = ["python"]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        launcher = _launcher_command(script) or [
            "accelerate",
            "launch",
            "--num_processes",
            os.environ["WORLD_SIZE"],
        ]
    return shlex.join([*launcher, script, *before, *kept, "--resume"])


def _launcher_command(script: str) -> list[str] | None:
    """How the launcher (`accelerate launch`, `torchrun`: the parent process, which runs the
    elastic agent) was started, up to the script: read from /proc where there is one."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    if script not in parent:
        return None
    launcher = parent[: parent.index(script)]
    if launcher[1:3] == ["-m", LAUNCH_MODULE]:  # tl-hf launch's way of starting it
        launcher = ["accelerate", "launch", *launcher[3:]]
    elif len(launcher) > 1 and os.path.basename(launcher[1]) in ("accelerate", "torchrun"):
        launcher = [os.path.basename(launcher[1]), *launcher[2:]]  # drop the interpreter
    elif launcher and os.path.basename(launcher[0]) in ("accelerate", "torchrun"):
        launcher = [os.path.basename(launcher[0]), *launcher[1:]]
    return launcher or None


def _where_and_saved() -> tuple[str, str]:
    """Where the run was (stage, epoch, step) and its last complete checkpoint, in words."""
    from tl_hf.output.folder import checkpoint_epoch, latest_complete_checkpoint

    where = f"during {PROGRESS.get('stage', 'startup')}"
    if PROGRESS.get("step") is not None:
        where += f" at epoch {PROGRESS['epoch']:.2f}, step {PROGRESS['step']}"
    output_dir = PROGRESS.get("output_dir")
    latest = latest_complete_checkpoint(output_dir) if output_dir else None
    if latest:
        saved = f"last complete checkpoint {latest} (epoch {checkpoint_epoch(latest):g})"
    else:
        saved = "no complete checkpoint yet (--resume starts from the beginning)"
    return where, saved


def stopped_message(signal_name: str, modality: str, argv: list[str]) -> str:
    """One line: what stopped the run, where, the last complete checkpoint, how to resume."""
    where, saved = _where_and_saved()
    return (
        f"stopped by {signal_name} {where}; {saved}; resume with: {resume_command(modality, argv)}"
    )


# What a collective says when the process on the other end is gone (gloo, NCCL, the store)
PEER_LOST_TEXT = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Socket Timeout",
    "Connection refused",
    "NCCL communicator was aborted",
    "remote process exited",
)


def lost_peer_message(err: BaseException, modality: str, argv: list[str]) -> str | None:
    """One line when `err` is a collective failing because another rank (its process or its
    machine) is gone: which rank, on which machine, where the run was, the last complete
    checkpoint and the command that resumes it; None for any other error."""
    import re

    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    text = str(err)
    backend_error = getattr(dist, "DistBackendError", ())
    if not (isinstance(err, backend_error) or any(t in text for t in PEER_LOST_TEXT)):
        return None
    world, rank = dist.get_world_size(), dist.get_rank()
    per_machine = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    address = re.search(r"\[([0-9A-Fa-f.:]+)\]:\d+", text)
    at = f", {address.group(1)}" if address else ""
    if world == 2:
        lost = 1 - rank
        who = f"rank {lost} (machine {lost // per_machine} of {world // per_machine}{at})"
    else:
        who = f"a rank of the {world} ({address.group(1) if address else 'address unknown'})"
    where, saved = _where_and_saved()
    return (
        f"lost {who} {where}: its process or machine stopped; {saved}; resume on every "
        f"machine (each with its own --machine_rank) with: {resume_command(modality, argv)}"
    )
