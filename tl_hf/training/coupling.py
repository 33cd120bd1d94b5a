"""Where tl-hf reaches inside `transformers.Trainer`: every private member it overrides or uses,
in one place, with why no public hook does the job. `tl-hf doctor` and the test suite check
that the installed transformers still has each of them (`missing_private_members`), so a
version that renames one fails with its name instead of deep inside a run.

Public hooks cover the rest: callbacks (early stopping, the monitor, progress, unfreezing),
`compute_loss` (batch-level augmentation), `create_optimizer` (the strategy's groups, built
after Accelerate/FSDP/DeepSpeed wrapped the model), `get_eval_dataloader` /
`get_test_dataloader` (cached features already on the device).
"""

from __future__ import annotations

import re

# member -> (who relies on it, why no public hook will do)
PRIVATE_MEMBERS: dict[str, tuple[str, str]] = {
    "_save_checkpoint": (
        "TLTrainer (override)",
        "the checkpoint's writing moves to a background thread (--async_checkpoints) and its "
        "time is counted apart (--profile); on_save runs after the files are written",
    ),
    "_finalize_training": (
        "TLTrainer (override)",
        "the pending checkpoint must be whole before the best one is loaded back and the "
        "others rotated away, which happens before on_train_end",
    ),
    "_run_epoch": (
        "TLTrainer (override)",
        "a run resumed from the evaluation that stopped it early has nothing left to train; "
        "the Trainer clears should_training_stop at on_train_begin and would run a step",
    ),
    "_save": (
        "async checkpoints, lora's save",
        "writes weights, config, processor and arguments from a given state dict (a CPU "
        "snapshot; the merged LoRA weights)",
    ),
    "_get_output_dir": ("async checkpoints", "where the Trainer puts checkpoint-N folders"),
    "_save_scaler": ("async checkpoints", "the grad scaler's state, as the Trainer saves it"),
    "_save_rng_state": ("async checkpoints", "the RNG states, as the Trainer saves them"),
    "_maybe_log_save_evaluate": (
        "head_loop",
        "logging, evaluation, early stopping and checkpoints on the Trainer's own schedule",
    ),
    "_load_from_checkpoint": ("head_loop (resume)", "the weights of the resumed checkpoint"),
    "_load_callback_state": ("head_loop (resume)", "early stopping's patience counter"),
    "_load_optimizer_and_scheduler": ("head_loop (resume)", "optimizer and schedule state"),
    "_load_rng_state": ("head_loop (resume)", "the RNG states"),
    "_load_best_model": ("head_loop (end)", "the best checkpoint back, as train() does"),
    "_prepare_inputs": (
        "TLTrainer.prediction_step (--tta)",
        "a batch moved to the device as prediction_step does, before its views are scored",
    ),
}
# Attributes the Trainer sets on itself (in __init__ or train(), not on the class), which
# head_loop reads or sets the way train() does: the batch size, the memory figures of the
# training metrics, and the running loss the Trainer's logging averages.
INSTANCE_ATTRIBUTES = (
    "_train_batch_size",
    "_memory_tracker",
    "_tr_loss",
    "_total_loss_scalar",
    "_globalstep_last_logged",
)


def missing_private_members() -> list[str]:
    """The members of `PRIVATE_MEMBERS` and `INSTANCE_ATTRIBUTES` the installed
    `transformers.Trainer` lacks (instance attributes: no `self.NAME =` in its source)."""
    import inspect

    from transformers import Trainer

    source = inspect.getsource(inspect.getmodule(Trainer))
    missing = [name for name in PRIVATE_MEMBERS if not hasattr(Trainer, name)]
    missing += [n for n in INSTANCE_ATTRIBUTES if not re.search(rf"self\.{n}\s*[:=]", source)]
    return sorted(missing)
