"""Training a head on cached features in a tight loop (part of the train step, used when
`tl_hf.training.features` cached the frozen backbone's output and one process trains).

A linear head on stored features is a few small kernels per step; through the Trainer's own
loop each step also pays a `DataLoader` fetch, a per-row read of the Arrow table, a collator,
a host sync (the NaN/inf filter reads the loss) and the per-step bookkeeping, which together
cost far more than the step itself. Here every split is moved to the device once as whole
tensors, and a step is: index a batch, forward, backward, clip, optimizer and scheduler step.

What stays the Trainer's: the optimizer and its groups (`TLTrainer.create_optimizer`), the
learning-rate schedule, the `TrainerState` and every callback event (so early stopping, the
monitor's history and the progress bar behave as in `trainer.train()`), logging, evaluation,
best-metric tracking and checkpoints (`Trainer._maybe_log_save_evaluate`), restoring the best
model at the end, and resuming from a checkpoint (state, optimizer, scheduler, RNG; the batch
order of every epoch is a function of the seed and the epoch, so a resumed run replays it).
Evaluation and test prediction read batches sliced from the device tensors as well.
"""

from __future__ import annotations

import glob
import inspect
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any


class DeviceRows:
    """A split's rows as tensors on the device; `__getitems__` gathers a whole batch in one
    indexing call, so a `DataLoader` over it needs no collator (`device_batches`)."""

    def __init__(self, tensors: dict[str, Any]):
        self.tensors = tensors
        self.num_rows = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.num_rows

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        import torch

        index = torch.as_tensor(indices, device=next(iter(self.tensors.values())).device)
        return {k: v.index_select(0, index) for k, v in self.tensors.items()}


def _whole_batch(batch):
    return batch


def device_batches(tensors: dict[str, Any], batch_size: int, accelerator):
    """Evaluation batches of a split already on the device, in order, through a `DataLoader`
    prepared by Accelerate as the Trainer's own are (its gather of the last, short batch
    relies on the loader telling it where the data ends)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(DeviceRows(tensors), batch_size=batch_size, collate_fn=_whole_batch)
    return accelerator.prepare(loader)


def split_tensors(dataset, device) -> dict[str, Any]:
    """A whole cached split (torch format: labels and feature columns) as tensors on `device`,
    read from the Arrow table in one go."""
    import torch

    columns = dataset.with_format("torch")[:]
    return {k: torch.as_tensor(v).to(device) for k, v in columns.items()}


def head_loop_blocker(trainer) -> str | None:
    """Why the tight loop cannot run this training (None: it can). The run then trains
    through `trainer.train()`, which handles every case."""
    from transformers import TrainerState

    args = trainer.args
    if args.world_size > 1:
        return "several processes: the Trainer shards the data"
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return "DeepSpeed/FSDP"
    if args.gradient_accumulation_steps != 1:
        return "--gradient_accumulation_steps > 1"
    if args.fp16:
        return "--fp16 needs the Trainer's gradient scaler"
    if getattr(args, "eval_on_start", False):
        return "--eval_on_start"
    if args.dataloader_drop_last or getattr(args, "group_by_length", False):
        return "--dataloader_drop_last / --group_by_length"
    resume = args.resume_from_checkpoint
    if resume and not os.path.isfile(os.path.join(str(resume), "trainer_state.json")):
        return f"--resume_from_checkpoint {resume} is not a checkpoint folder"
    needed = (
        hasattr(trainer, "_maybe_log_save_evaluate")
        and hasattr(trainer, "_load_best_model")
        and hasattr(TrainerState, "compute_steps")
        and hasattr(TrainerState, "init_training_references")
    )
    if (
        not needed
        or "learning_rate" not in inspect.signature(trainer._maybe_log_save_evaluate).parameters
    ):
        import transformers

        return f"transformers {transformers.__version__} lacks the Trainer methods it reuses"
    return None


def _order(num_rows: int, seed: int, epoch: int, device):
    """The batch order of one epoch, the one the Trainer's sampler draws (Accelerate's
    seedable sampler: a permutation from a generator seeded with seed + epoch), so both loops
    see the same batches and a resumed run replays them."""
    import torch

    generator = torch.Generator().manual_seed(seed + epoch)
    # the Trainer's DataLoader draws its base seed from the global generator at every epoch;
    # drawing it here too keeps the dropout masks of both loops the same
    torch.empty((), dtype=torch.int64).random_()
    return torch.randperm(num_rows, generator=generator).to(device)


def train_head_on_features(trainer, splits: dict[str, Any]):
    """Train `trainer.model` (attached to cached features) on `splits["train"]` in a tight loop.

    Args:
        trainer: the run's `TLTrainer`, built on the cached splits.
        splits: the cached `DatasetDict` (train, validation, maybe test); each split moves to
            the device once, and evaluation/prediction on it slice those tensors.

    Returns:
        A `TrainOutput`, as `trainer.train()` returns it.
    """
    import torch
    from transformers.trainer_utils import TrainOutput, speed_metrics

    args, handler = trainer.args, trainer.callback_handler
    device = args.device
    tensors = {name: split_tensors(ds, device) for name, ds in splits.items()}
    trainer.device_splits = {name: (splits[name], t) for name, t in tensors.items()}
    train = tensors["train"]
    schedule = _schedule(args, len(train["labels"]), trainer._train_batch_size)
    loop = _start(trainer, schedule, train)
    done = loop.state.global_step
    first_epoch, skip = divmod(done, schedule.steps_per_epoch)

    # what `_maybe_log_save_evaluate` and `log` read: the loss summed on the device since the
    # last log (read once per logging step, not per step), flops (none: features, not tokens)
    loop.tr_loss = torch.zeros((), device=device)
    trainer._tr_loss, trainer._total_loss_scalar = loop.tr_loss, 0.0
    trainer._globalstep_last_logged = done
    trainer.current_flos = 0
    loop.params = [p for group in loop.optimizer.param_groups for p in group["params"]]
    loop.start_time = time.time()
    loop.model.zero_grad(set_to_none=True)
    trainer.control = handler.on_train_begin(args, loop.state, trainer.control)
    _run_epochs(loop, first_epoch, skip)
    return _finish(
        trainer, loop.start_time, schedule.num_train_samples, done, TrainOutput, speed_metrics
    )


@dataclass(frozen=True)
class _Schedule:
    """The length of the training, as the Trainer counts it."""

    num_rows: int
    batch_size: int
    steps_per_epoch: int
    max_steps: int
    num_epochs: int
    num_train_samples: float


def _schedule(args, num_rows: int, batch_size: int) -> _Schedule:
    """Steps per epoch, steps and epochs in all, training samples (`--max_steps` wins over
    `--num_train_epochs`)."""
    steps_per_epoch = max(1, math.ceil(num_rows / batch_size))
    if args.max_steps > 0:
        max_steps = args.max_steps
        num_epochs = math.ceil(max_steps / steps_per_epoch)
        num_train_samples = max_steps * batch_size
    else:
        max_steps = math.ceil(args.num_train_epochs * steps_per_epoch)
        num_epochs = math.ceil(args.num_train_epochs)
        num_train_samples = args.num_train_epochs * num_rows
    return _Schedule(
        num_rows, batch_size, steps_per_epoch, max_steps, num_epochs, num_train_samples
    )


@dataclass
class _Loop:
    """What every step of the tight loop reads, and the last gradient norm and learning rate
    (what `_maybe_log_save_evaluate` logs)."""

    trainer: Any
    model: Any
    optimizer: Any
    scheduler: Any
    state: Any
    train: dict[str, Any]  # the training split's tensors on the device
    schedule: _Schedule
    params: list[Any] = field(default_factory=list)  # what gradient clipping measures
    tr_loss: Any = None
    start_time: float = 0.0
    grad_norm: Any = None
    learning_rate: float | None = None


def _start(trainer, schedule: _Schedule, train: dict[str, Any]) -> _Loop:
    """As the start of `Trainer._inner_training_loop`: the model prepared, the optimizer and
    schedule built, a fresh (or resumed) `TrainerState`."""
    from transformers import TrainerState
    from transformers.trainer_callback import ExportableState

    args, handler = trainer.args, trainer.callback_handler
    max_steps = schedule.max_steps
    trainer.is_in_train = True
    trainer._memory_tracker.start()
    model = trainer.accelerator.prepare_model(trainer.model)  # one process: autocast, placement
    trainer.model_wrapped = model
    trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    state = TrainerState(
        stateful_callbacks=[
            cb for cb in handler.callbacks + [trainer.control] if isinstance(cb, ExportableState)
        ]
    )
    state.train_batch_size = schedule.batch_size
    state.compute_steps(args, max_steps)
    resume = args.resume_from_checkpoint
    if resume:
        state = _resume(trainer, resume)
    state.init_training_references(trainer, max_steps, schedule.num_epochs, None)
    trainer.state = state
    for attr in ("model", "optimizer", "lr_scheduler"):
        setattr(handler, attr, getattr(trainer, attr))
    return _Loop(trainer, model, optimizer, scheduler, state, train, schedule)


def _run_epochs(loop: _Loop, first_epoch: int, skip: int) -> None:
    """The epochs, from `first_epoch` (a resumed run skips the `skip` steps it already ran),
    with the Trainer's callback events, logging and evaluation at the end of each."""
    trainer, state = loop.trainer, loop.state
    args, handler = trainer.args, trainer.callback_handler
    for epoch in range(first_epoch, loop.schedule.num_epochs):
        trainer.control = handler.on_epoch_begin(args, state, trainer.control)
        seed = args.data_seed if args.data_seed is not None else args.seed
        order = _order(loop.schedule.num_rows, seed, epoch, args.device)
        for step in range(skip, loop.schedule.steps_per_epoch):
            if _train_step(loop, epoch, step, order):
                break
        skip = 0
        trainer.control = handler.on_epoch_end(args, state, trainer.control)
        _log_save_evaluate(loop, epoch)
        if trainer.control.should_training_stop:
            break


def _train_step(loop: _Loop, epoch: int, step: int, order) -> bool:
    """One optimizer step on the batch `order` puts at `step`, with the Trainer's callback
    events, logging and evaluation; True when the epoch ends here."""
    import torch

    trainer, model, optimizer, state = loop.trainer, loop.model, loop.optimizer, loop.state
    args, handler = trainer.args, trainer.callback_handler
    trainer.control = handler.on_step_begin(args, state, trainer.control)
    if not model.training:  # evaluation leaves the model (and a schedule-free
        model.train()  # optimizer) in eval mode
        if callable(getattr(optimizer, "train", None)):
            optimizer.train()
    batch_size = loop.schedule.batch_size
    index = order[step * batch_size : (step + 1) * batch_size]
    batch = {k: v.index_select(0, index) for k, v in loop.train.items()}
    if trainer.batch_augment is None:
        loss = model(**batch).loss
    else:  # feature mixup: soft labels, the trainer's soft cross-entropy
        loss = trainer.compute_loss(model, batch)
    loss.backward()
    loop.tr_loss += loss.detach()
    if args.max_grad_norm > 0:
        loop.grad_norm = torch.nn.utils.clip_grad_norm_(loop.params, args.max_grad_norm)
    trainer.control = handler.on_pre_optimizer_step(args, state, trainer.control)
    optimizer.step()
    trainer.control = handler.on_optimizer_step(args, state, trainer.control)
    loop.learning_rate = loop.scheduler.get_last_lr()[0]
    loop.scheduler.step()
    model.zero_grad(set_to_none=True)
    state.global_step += 1
    state.epoch = epoch + (step + 1) / loop.schedule.steps_per_epoch
    trainer.control = handler.on_step_end(args, state, trainer.control)
    _log_save_evaluate(loop, epoch)
    if trainer.control.should_epoch_stop or trainer.control.should_training_stop:
        return True
    if state.global_step >= loop.schedule.max_steps:
        trainer.control.should_training_stop = True
        return True
    return False


def _log_save_evaluate(loop: _Loop, epoch: int) -> None:
    """`Trainer._maybe_log_save_evaluate` on the loop's loss, gradient norm and learning rate:
    logs, evaluates and saves a checkpoint when each is due."""
    loop.trainer._maybe_log_save_evaluate(
        loop.tr_loss,
        loop.grad_norm,
        loop.model,
        None,
        epoch,
        None,
        loop.start_time,
        learning_rate=loop.learning_rate,
    )


def _resume(trainer, checkpoint: str):
    """Read a checkpoint's trainer state, optimizer, scheduler and RNG states."""
    from transformers import TrainerState

    state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
    if state.best_model_checkpoint is not None and not os.path.isdir(state.best_model_checkpoint):
        state.best_model_checkpoint = None
    trainer.state = state
    trainer._load_from_checkpoint(checkpoint)
    trainer._load_callback_state()
    trainer._load_optimizer_and_scheduler(checkpoint)
    trainer._load_rng_state(checkpoint)
    return state


def _finish(trainer, start_time, num_train_samples, done, TrainOutput, speed_metrics):
    """As `Trainer._finalize_training`: training metrics, the best model back, `on_train_end`."""
    args, state = trainer.args, trainer.state
    trainer.checkpoint_writer.wait()  # as TLTrainer._finalize_training
    trainer._total_loss_scalar += trainer._tr_loss.item()
    steps = state.global_step - done
    train_loss = trainer._total_loss_scalar / max(steps, 0.001)
    metrics = speed_metrics(
        "train",
        start_time,
        num_samples=num_train_samples * steps / max(state.max_steps, 1),
        num_steps=steps,
    )
    trainer.store_flos()
    metrics["total_flos"] = state.total_flos
    metrics["train_loss"] = train_loss
    trainer._memory_tracker.stop_and_update_metrics(metrics)
    trainer.log(metrics)
    best = state.best_model_checkpoint
    if args.load_best_model_at_end and best is not None:
        trainer._load_best_model()
    if args.should_save and best is not None and args.save_total_limit == 1:
        # as the Trainer does: with one checkpoint kept, only the best one stays
        for path in glob.glob(os.path.join(args.output_dir, "checkpoint-*")):
            if not os.path.samefile(path, best):
                shutil.rmtree(path, ignore_errors=True)
    trainer.control = trainer.callback_handler.on_train_end(args, state, trainer.control)
    trainer.is_in_train = False
    return TrainOutput(state.global_step, train_loss, metrics)
