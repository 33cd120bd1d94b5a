"""Train: one thin `Trainer` subclass (it builds the strategy's parameter groups in
`create_optimizer`, after Accelerate/FSDP/DeepSpeed wrapped the model), the early-stopping
preset, and the metrics."""

from __future__ import annotations

from typing import Any

from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

from tl_hf.strategy import build_param_groups

_METRICS: dict[str, Any] = {}


def _metric(name: str):
    import evaluate

    from tl_hf.metrics import metric_path

    if name not in _METRICS:
        _METRICS[name] = evaluate.load(metric_path(name))
    return _METRICS[name]


def compute_metrics(eval_pred) -> dict[str, float]:
    """Accuracy, macro-F1 (through the `evaluate` modules shipped in tl_hf) and the
    cross-entropy loss, all from the gathered logits.

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
    return {
        "loss": float(loss),
        **_metric("accuracy").compute(predictions=predictions, references=labels),
        **_metric("f1").compute(predictions=predictions, references=labels, average="macro"),
    }


def per_class_report(predictions, labels, names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for every class."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(
        labels, predictions, labels=list(range(len(names))), zero_division=0
    )
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
    """`Trainer` whose optimizer holds exactly the strategy's trainable parameters, in
    groups by depth (LLRD learning rates) and decay (none on biases and norms).

    `batch_augment` (mixup, cutmix, SpecAugment) runs on collated training batches only; when
    it makes soft labels, the loss is the soft cross-entropy (a float `labels` tensor would
    make the transformers heads compute a multi-label BCE).
    """

    def __init__(
        self, *args, strategy: str = "full", llrd_decay: float = 1.0, batch_augment=None, **kwargs
    ):
        self.strategy = strategy
        self.llrd_decay = llrd_decay
        self.batch_augment = batch_augment
        super().__init__(*args, **kwargs)
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
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


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
