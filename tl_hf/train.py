"""Train: one thin `Trainer` subclass (it builds the strategy's parameter groups in
`create_optimizer`, after Accelerate/FSDP/DeepSpeed wrapped the model), the early-stopping
preset, and the metrics."""

from __future__ import annotations

from typing import Any

from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

from tl_hf.async_checkpoint import CheckpointWriter
from tl_hf.strategy import build_param_groups


def compute_metrics(eval_pred) -> dict[str, float]:
    """Accuracy, macro-F1 and the cross-entropy loss, all from the gathered logits.

    Accuracy and F1 are counted with numpy, as the `evaluate` modules shipped in
    `tl_hf.metrics` compute them (F1 over the classes that occur in labels or predictions, 0
    where undefined): loading those modules and scikit-learn cost every run a second or two.

    The loss returned here replaces the Trainer's `eval_loss`, which averages per-batch mean
    losses: under several processes the last batch of an odd-sized split is padded with
    repeated examples, and their losses leak into those batch means (the logits of the
    padding are dropped by `gather_for_metrics`, the batch means are not). From the logits,
    every example counts exactly once on any number of processes.
    """
    import numpy as np

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    logits = np.asarray(logits, dtype=np.float64)
    predictions = logits.argmax(-1)
    labels = np.asarray(labels)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    if (
        labels.ndim > 1
    ):  # soft labels (mixup): soft cross-entropy, scored against the dominant class
        loss = -(labels * log_probs).sum(-1).mean()
        labels = labels.argmax(-1)
    else:
        loss = -np.take_along_axis(log_probs, labels[:, None].astype(np.int64), -1).mean()
    present = np.union1d(labels, predictions).astype(np.int64)
    _, _, f1, _ = _per_class_counts(predictions, labels, present)
    return {
        "loss": float(loss),
        "accuracy": float((predictions == labels).mean()),
        "f1": float(f1.mean()),
    }


def _per_class_counts(predictions, labels, classes):
    """Precision, recall, F1 (0 where undefined) and support of each class in `classes`."""
    import numpy as np

    predictions, labels = np.asarray(predictions), np.asarray(labels)
    hit = predictions[:, None] == classes[None, :]
    true = labels[:, None] == classes[None, :]
    tp = (hit & true).sum(0)
    predicted, support = hit.sum(0), true.sum(0)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros(len(classes)), where=b > 0)

    f1 = ratio(2 * tp, predicted + support)
    return ratio(tp, predicted), ratio(tp, support), f1, support


def per_class_report(predictions, labels, names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for every class."""
    import numpy as np

    p, r, f, s = _per_class_counts(predictions, labels, np.arange(len(names)))
    return {
        n: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, n in enumerate(names)
    }


class TLTrainer(Trainer):
    """`Trainer` whose optimizer holds exactly the strategy's trainable parameters, in the
    groups the strategy declares (`Strategy.param_groups`: by depth, LLRD learning rates, no
    decay on biases and norms).

    `batch_augment` (mixup, cutmix, SpecAugment) runs on collated training batches only; when
    it makes soft labels, the loss is the soft cross-entropy (a float `labels` tensor would
    make the transformers heads compute a multi-label BCE).
    """

    def __init__(
        self,
        *args,
        strategy: str = "full",
        llrd_decay: float = 1.0,
        batch_augment=None,
        strategy_options=None,
        timer=None,
        speed=None,
        **kwargs,
    ):
        self.strategy = strategy
        self.llrd_decay = llrd_decay
        self.strategy_options = strategy_options  # the run's StrategyArguments, when known
        self.batch_augment = batch_augment
        self.timer = timer  # tl_hf.timing.PhaseTimer: evaluation and checkpoint time in training
        self.device_splits: dict[str, Any] = {}  # feature tensors on the device (tl_hf.head_loop)
        self.async_checkpoints = bool(speed is not None and speed.async_checkpoints)
        self.checkpoint_writer = CheckpointWriter()
        super().__init__(*args, **kwargs)
        if speed is not None:
            apply_speed_options(self, speed)
        # Classification heads return the batch-mean loss and ignore `num_items_in_batch`, yet
        # their forward takes **kwargs, so the Trainer would believe the loss is a token sum:
        # it then multiplies it by the number of processes (doubled loss and gradients under
        # 2-process DDP) and skips the division by gradient_accumulation_steps.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.batch_augment is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = self.batch_augment(dict(inputs))
        labels = inputs.get("labels")
        if labels is None or labels.dtype.is_floating_point is False:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from tl_hf.augment import soft_cross_entropy

        soft = inputs.pop("labels")
        outputs = model(**inputs)
        loss = soft_cross_entropy(outputs.logits, soft)
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, *args, **kwargs):
        if self.timer is None or not self.is_in_train:
            return super().evaluate(*args, **kwargs)
        with self.timer.phase("evaluation during training"):
            self.timer.inside["evaluation during training"] = "train"
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        if self.timer is None:
            return self._checkpoint(model, trial)
        with self.timer.phase("checkpoints"):
            self.timer.inside["checkpoints"] = "train"
            return self._checkpoint(model, trial)

    def _checkpoint(self, model, trial):
        from tl_hf.async_checkpoint import can_write_async, save_checkpoint_async

        if self.async_checkpoints and can_write_async(self, trial):
            save_checkpoint_async(self)  # the training thread waits for a snapshot only
        else:
            super()._save_checkpoint(model, trial)

    def train(self, *args, **kwargs):
        # a normal end waits in _finalize_training; an error or Ctrl-C here
        try:
            return super().train(*args, **kwargs)
        except BaseException:  # the pending checkpoint is finished first
            self.checkpoint_writer.wait(raise_error=False)
            raise

    def _finalize_training(self, *args, **kwargs):
        # the best checkpoint may be the one being written; and with save_total_limit 1 the
        # Trainer deletes the other checkpoint folders next
        self.checkpoint_writer.wait()
        return super()._finalize_training(*args, **kwargs)

    def get_eval_dataloader(self, eval_dataset=None):
        rows = self._device_rows(eval_dataset if eval_dataset is not None else self.eval_dataset)
        return rows if rows is not None else super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        rows = self._device_rows(test_dataset)
        return rows if rows is not None else super().get_test_dataloader(test_dataset)

    def _device_rows(self, dataset):
        """Batches sliced from feature tensors already on the device, when `dataset` is one of
        the cached splits moved there (no collator, no per-row reads)."""
        if isinstance(dataset, str) or not self.device_splits:
            return None
        for tensors in (t for ds, t in self.device_splits.values() if ds is dataset):
            from tl_hf.head_loop import device_batches

            return device_batches(tensors, self.args.eval_batch_size, self.accelerator)
        return None

    def _run_epoch(self, *args, **kwargs):
        # Resumed from the checkpoint of the evaluation that stopped the run early (killed
        # while reporting), nothing is left to train; but the Trainer resets
        # should_training_stop at on_train_begin and would start another epoch.
        stopper = find_early_stopping(self)
        if stopper and stopper.early_stopping_patience_counter >= stopper.early_stopping_patience:
            self.control.should_training_stop = True
            return
        return super()._run_epoch(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        groups = build_param_groups(
            opt_model,
            self.strategy,
            self.args.learning_rate,
            self.args.weight_decay,
            self.llrd_decay,
            reference_model=self.accelerator.unwrap_model(opt_model),
            options=self.strategy_options,
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


def apply_speed_options(trainer: Trainer, speed) -> None:
    """The speed flags that change how the Trainer runs (`tl_hf.config.SpeedArguments`):
    evaluation batches `eval_batch_scale` times larger; with `bf16_weights` (needs `--bf16`),
    the backbone's floating-point weights cast to bfloat16 once, so autocast has no weight to
    cast at each step; the new head stays float32 (autocast runs its matmul in bf16)."""
    if speed.eval_batch_scale > 1:
        trainer.args.per_device_eval_batch_size *= speed.eval_batch_scale
    if speed.bf16_weights:
        import torch

        from tl_hf.strategy import head_parameter_names

        head = head_parameter_names(trainer.model)
        for name, param in trainer.model.named_parameters():
            if param.is_floating_point() and name not in head:
                param.data = param.data.to(torch.bfloat16)


def build_early_stopping(patience: int, threshold: float) -> EarlyStoppingCallback | None:
    """The preset's callback (patience counted in evaluations); None when patience is 0."""
    if patience <= 0:
        return None
    return EarlyStoppingCallback(
        early_stopping_patience=patience, early_stopping_threshold=threshold
    )


def find_early_stopping(trainer: Trainer) -> EarlyStoppingCallback | None:
    """The trainer's early-stopping callback: after a resume it is the one restored from the
    checkpoint (patience counter included), not the one the trainer was given."""
    return next(
        (c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)),
        None,
    )


class ProgressCallback(TrainerCallback):
    """Keeps `tl_hf.interrupt.PROGRESS` at the current epoch and step, so an interrupted run
    can say where it stopped."""

    def on_step_end(self, args, state, control, **kwargs):
        from tl_hf.interrupt import PROGRESS

        PROGRESS.update(stage="training", epoch=state.epoch or 0.0, step=state.global_step)

    def on_epoch_end(self, args, state, control, **kwargs):
        from tl_hf.interrupt import PROGRESS

        PROGRESS["stage"] = "evaluation and checkpointing"

    def on_save(self, args, state, control, **kwargs):
        from tl_hf.interrupt import PROGRESS

        PROGRESS["stage"] = "training"


def summarize_early_stopping(
    trainer: Trainer, callback: EarlyStoppingCallback | None
) -> dict[str, Any]:
    """Where the run stopped and which epoch won (from the trainer state)."""
    state, args = trainer.state, trainer.args
    evals = [e for e in state.log_history if "eval_loss" in e or args.metric_for_best_model in e]
    best_step = getattr(state, "best_global_step", None)
    best_epoch = next((e.get("epoch") for e in evals if e.get("step") == best_step), None)
    stopped_epoch = evals[-1]["epoch"] if evals else state.epoch
    early_stopped = bool(
        callback is not None
        and callback.early_stopping_patience_counter >= callback.early_stopping_patience
    )

    def as_epoch(x):
        return (
            None
            if x is None
            else (int(round(x)) if abs(x - round(x)) < 1e-6 else round(float(x), 3))
        )

    return {
        "best_epoch": as_epoch(best_epoch),
        "stopped_epoch": as_epoch(stopped_epoch),
        "early_stopped": early_stopped,
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": state.best_metric,
        "metric_for_best_model": args.metric_for_best_model,
        "early_stopping_patience": callback.early_stopping_patience if callback else 0,
    }
