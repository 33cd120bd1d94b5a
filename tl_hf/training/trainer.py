"""The one `Trainer` subclass: it builds the strategy's parameter groups in
`create_optimizer` (after Accelerate/FSDP/DeepSpeed wrapped the model), mixes batches for
batch-level augmentation in `compute_loss`, and reads cached features from the device. The
private `Trainer` members it (and `tl_hf.training.head_loop`) relies on are listed, with why, in
`tl_hf.training.coupling`."""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from tl_hf.strategies.base import build_param_groups, get_strategy
from tl_hf.training.async_checkpoint import CheckpointWriter
from tl_hf.training.callbacks import find_early_stopping


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
        strategy="full",
        options=None,
        batch_augment=None,
        test_time=None,
        timer=None,
        speed=None,
        **kwargs,
    ):
        """`strategy`: the `Strategy` record (or its name); `options`: the run's strategy
        settings (default: the strategy's defaults); `timer`: a `PhaseTimer` that counts
        evaluation and checkpoint time inside training; `speed`: `SpeedArguments`."""
        self.strategy = strategy if not isinstance(strategy, str) else get_strategy(strategy)
        self.strategy_options = options
        self.batch_augment = batch_augment
        self.test_time = test_time  # fn(forward, pixel_values) -> logits (`--tta`), or None
        self.timer = timer
        self.device_splits: dict[str, Any] = {}  # feature tensors on the device (head_loop)
        self.async_checkpoints = bool(speed is not None and speed.async_checkpoints)
        self.checkpoint_writer = CheckpointWriter()
        super().__init__(*args, **kwargs)
        if speed is not None and speed.bf16_weights:
            apply_bf16_weights(self.model)
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
        from tl_hf.augment.base import soft_cross_entropy

        soft = inputs.pop("labels")
        outputs = model(**inputs)
        loss = soft_cross_entropy(outputs.logits, soft)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """With `--tta`, the logits of an evaluated batch are those of its test-time views
        (`tl_hf.augment.tta.view_logits`) and the loss is their cross-entropy."""
        if self.test_time is None:  # every evaluation batch passes here: nothing else to do
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        from tl_hf.augment.tta import cached_view_logits, has_cached_views

        cached = has_cached_views(inputs)  # a frozen backbone's stored views (feature cache)
        if not (cached or "pixel_values" in inputs):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        import torch
        import torch.nn.functional as F

        from tl_hf.training.features import COLUMN_PREFIX

        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        rest = {k: v for k, v in inputs.items() if k not in ("pixel_values", "labels")}
        with torch.no_grad(), self.compute_loss_context_manager():
            if cached:
                logits = cached_view_logits(
                    lambda columns: model(**columns).logits, inputs, COLUMN_PREFIX
                )
            else:
                logits = self.test_time(
                    lambda pixels: model(pixel_values=pixels, **rest).logits, inputs["pixel_values"]
                )
        loss = None if labels is None else F.nll_loss(logits, labels).detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, logits, labels

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
        from tl_hf.training.async_checkpoint import can_write_async, save_checkpoint_async

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
            from tl_hf.training.head_loop import device_batches

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
            reference_model=self.accelerator.unwrap_model(opt_model),
            options=self.strategy_options,
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


def apply_bf16_weights(model) -> None:
    """`--bf16_weights` (needs `--bf16`): the backbone's floating-point weights cast to
    bfloat16 once, so autocast has no weight to cast at each step; the new head stays float32
    (autocast runs its matmul in bf16)."""
    import torch

    from tl_hf.model.depth import head_parameter_names

    head = head_parameter_names(model)
    for name, param in model.named_parameters():
        if param.is_floating_point() and name not in head:
            param.data = param.data.to(torch.bfloat16)
