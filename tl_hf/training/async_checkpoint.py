"""Checkpoints written in the background (`--async_checkpoints`, on by default, one process).

The Trainer writes each checkpoint (weights, AdamW state: three times the weights, scheduler,
RNG, trainer_state.json) before the next training step; on a GPU that wait is a large share of
a short epoch. Here the training loop waits only for a snapshot: the weights and the
optimizer state copied to CPU memory (a device-to-host copy on a GPU, a memory copy on the
CPU), the RNG and scaler states written at once (they are small and must be the states of
this moment), and the trainer state serialized. A background thread then writes the rest
and `trainer_state.json` last, and finally rotates the old checkpoints.

What stays true:
- A checkpoint whose thread was killed has no (or a truncated) `trainer_state.json` or
  truncated weights, which `tl_hf.output.folder.checkpoint_problem` reports: `--resume` takes the
  previous one, and rotation only deletes old checkpoints after the new one is whole.
- One write at a time: the next checkpoint, the best-model restore at the end of training and
  the end of `train()` (an exception or Ctrl-C included) wait for the pending one, and an
  error in the thread is raised there.
- The files are those the Trainer writes (the same names and contents; the tests compare
  them), so resuming works with either setting.

Used only where the Trainer's own save would be a plain single-process write: not under
DDP/FSDP/DeepSpeed (collective saves), XLA or SageMaker, with `save_only_model` or
`push_to_hub`, or in a hyperparameter search.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any


class CheckpointWriter:
    """Runs one write function at a time in a background thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, write, name: str) -> None:
        """Wait for the previous write, then start `write()` in a thread called `name`."""
        self.wait()
        # not a daemon: an exiting interpreter (Ctrl-C) lets the checkpoint finish
        self._thread = threading.Thread(target=self._run, args=(write,), name=name)
        self._thread.start()

    def _run(self, write) -> None:
        try:
            write()
        except BaseException as err:  # raised in the training thread by wait()
            self._error = err

    def wait(self, raise_error: bool = True) -> None:
        """Block until the pending write is done; raise its error (if any) unless told not."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise RuntimeError(f"writing a checkpoint in the background failed: {error}") from error


def can_write_async(trainer, trial) -> bool:
    """Whether the Trainer's checkpoint would be a plain single-process write."""
    from transformers.utils import is_sagemaker_mp_enabled, is_torch_xla_available

    args = trainer.args
    return not (
        args.world_size > 1
        or trainer.is_deepspeed_enabled
        or trainer.is_fsdp_enabled
        or is_torch_xla_available()
        or is_sagemaker_mp_enabled()
        or args.save_only_model
        or args.push_to_hub
        or trial is not None
        or trainer.hp_search_backend is not None
    )


def to_cpu(value: Any) -> Any:
    """A copy of `value` with every tensor copied to CPU memory (nested dicts/lists kept)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def write_training_state(output_dir: str, optimizer: dict, scheduler: dict) -> None:
    """The optimizer and scheduler files, under the Trainer's names."""
    import torch
    from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME

    torch.save(optimizer, os.path.join(output_dir, OPTIMIZER_NAME))
    torch.save(scheduler, os.path.join(output_dir, SCHEDULER_NAME))


def save_checkpoint_async(trainer) -> str:
    """`Trainer._save_checkpoint` with the writing moved to `trainer.checkpoint_writer`'s
    thread (see the module docstring). Returns the checkpoint folder."""
    import dataclasses

    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_callback import ExportableState
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

    from tl_hf.output.atomic import write_bytes

    writer: CheckpointWriter = trainer.checkpoint_writer
    writer.wait()  # the previous checkpoint is whole before this one starts
    state, args = trainer.state, trainer.args
    trainer.store_flos()
    run_dir = trainer._get_output_dir(trial=None)
    output_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
    os.makedirs(output_dir, exist_ok=True)

    # the snapshot: what the next optimizer step would change
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    weights = to_cpu(model.state_dict())
    optimizer = to_cpu(trainer.optimizer.state_dict())
    scheduler = to_cpu(trainer.lr_scheduler.state_dict())
    trainer._save_scaler(output_dir)
    trainer._save_rng_state(output_dir)

    # as the Trainer does: the best checkpoint (its folder exists: made by an earlier call),
    # then the callbacks' states into the trainer state
    strategies = (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST)
    if args.save_strategy in strategies and state.best_global_step:
        best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}")
        if os.path.exists(best):
            state.best_model_checkpoint = best
    for cb in [*trainer.callback_handler.callbacks, trainer.control]:
        if isinstance(cb, ExportableState):
            name = cb.__class__.__name__
            if isinstance(state.stateful_callbacks[name], list):
                state.stateful_callbacks[name].append(cb.state())
            else:
                state.stateful_callbacks[name] = cb.state()
    state_json = json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n"
    best_checkpoint, limit = state.best_model_checkpoint, args.save_total_limit

    def write() -> None:
        trainer._save(output_dir, state_dict=weights)  # weights, config, processor, args
        write_training_state(output_dir, optimizer, scheduler)
        # last: its presence (whole, parseable) marks the checkpoint complete
        write_bytes(os.path.join(output_dir, TRAINER_STATE_NAME), state_json.encode())
        rotate_checkpoints(
            output_dir=run_dir,
            save_total_limit=limit,
            best_model_checkpoint=best_checkpoint,
            use_mtime=True,
        )

    writer.submit(write, f"tl-hf checkpoint {state.global_step}")
    return output_dir
