"""The data of a lab session: loaded, augmented and preprocessed once per augmentation set (at
the base seed) and shared by every trial of that set; trials never see the test split."""

from __future__ import annotations

import dataclasses
import os


def prepared_for(session, name: str, model: str | None = None):
    """The data of augmentation set `name` (`tl_hf.pipeline.Prepared`) for the lab's checkpoint
    or the candidate `model` (each has its own processor), prepared on first use."""
    from tl_hf.lab.grid import TrialSpec, trial_args
    from tl_hf.pipeline import plan_run, prepare_data

    base = session.base
    if (model, name) not in session.prepared:
        spec = TrialSpec(
            base.strategy.strategy,
            base.training.learning_rate,
            None,
            None,
            name,
            base.training.seed,
            model=model,
        )
        folder = os.path.join(session.lab_dir, "trials", "_data")
        args = trial_args(base, spec, session.augment_sets[name], folder)
        session.prepared[(model, name)] = prepare_data(plan_run(args), session.dataset)
    return session.prepared[(model, name)]


def rows_per_class(session) -> float:
    """Training rows per class of the session's data (before augmentation)."""
    from tl_hf.data.load import rows_per_class as per_class

    return per_class(prepared_for(session, "none", session.model).originals)


def without_test(prepared):
    """The prepared data minus its test split: only the winner is ever scored on test."""
    from datasets import DatasetDict

    features = DatasetDict({k: v for k, v in prepared.features.items() if k != "test"})
    return dataclasses.replace(prepared, features=features)
