"""Step 6a: the strategy's changes to the model before its parameters are chosen (LoRA's
adapters; LP-FT's linear probe, a training phase of its own before the main one)."""

from __future__ import annotations

import itertools
import os

from tl_hf.console import say
from tl_hf.pipeline.plan import Plan
from tl_hf.pipeline.steps import Prepared, cache_features_step


def prepare_model_step(model, plan: Plan, data: Prepared, resume_from: str | None) -> list:
    """Run the strategy's `prepare_model`. Returns the histories of the phases trained here.

    A resumed run's checkpoint (`resume_from`) holds the whole model as the main phase left
    it and the histories of the phases before it: those phases are not trained again."""
    from tl_hf.report.monitor import load_monitor_state
    from tl_hf.strategies.base import StrategyContext

    recorded = (
        list((load_monitor_state(resume_from) or {}).get("phases", [])) if resume_from else []
    )
    calls = itertools.count()

    def train_phase(model, name: str, epochs: int, learning_rate: float) -> dict:
        done = next(calls)
        if done < len(recorded):
            say(
                f"resume: phase {done + 1} ({recorded[done].get('name', name)}) is in "
                f"{os.path.basename(resume_from)}; not trained again"
            )
            return {**recorded[done], "name": name}
        return train_phase_step(model, plan, data, name, epochs, learning_rate)

    learning_rates = dict(plan.modality.default_learning_rates)
    context = StrategyContext(plan.options, learning_rates, say, train_phase)
    plan.strategy.prepare_model(model, context)
    return context.phases


def train_phase_step(
    model, plan: Plan, data: Prepared, name: str, epochs: int, learning_rate: float
) -> dict:
    """A training phase before the main one (`StrategyContext.train_phase`): the model trains
    under strategy `name` for `epochs` epochs, evaluated every epoch, no checkpoints (the
    phase ends on its last epoch), features cached when that strategy allows it. Returns the
    phase's history (`train`, `eval`, `learning_rates` records)."""
    import gc
    import tempfile

    from tl_hf.config import options_for
    from tl_hf.pipeline.steps import batch_augment_step
    from tl_hf.pipeline.trainer import build_trainer
    from tl_hf.report.monitor import MonitorCallback
    from tl_hf.strategies.base import apply_freeze_feature_encoder, apply_strategy, get_strategy

    record = get_strategy(name)
    options = options_for(plan.args, record, trainable_layers=0)
    apply_strategy(model, record, options=options)
    if options.freeze_feature_encoder:
        apply_freeze_feature_encoder(model)
    features = cache_features_step(model, plan, data, record, options)
    with tempfile.TemporaryDirectory(prefix="tl_hf_phase_") as tmp:
        monitor = MonitorCallback(tmp, plot=False)
        trainer = build_trainer(
            model,
            plan,
            data,
            features,
            [monitor],
            strategy=record,
            options=options,
            batch_augment=batch_augment_step(plan, data),
            output_dir=tmp,
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            save_strategy="no",
            load_best_model_at_end=False,
            disable_tqdm=plan.training_args.disable_tqdm,  # as the run shows its progress
        )
        trainer.train()
    if features.cache is not None:
        features.cache.restore()
    # the phase's Trainer (and its DDP wrapper, which hooks the parameters) must be gone
    # before the main Trainer wraps the model again
    del trainer
    gc.collect()
    return {
        "name": name,
        "epochs": epochs,
        **{k: monitor.history[k] for k in ("train", "eval", "learning_rates")},
    }
