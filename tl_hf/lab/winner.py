"""The lab's winner: which configuration is kept (`choose_winner`: the best mean validation,
or the session's reference when the best beats it by less than the validation split can
resolve), and its rerun into a complete run folder, the only run scored on the test split."""

from __future__ import annotations

import dataclasses
import os

from tl_hf.console import say
from tl_hf.lab.data import prepared_for
from tl_hf.lab.grid import LabArguments, TrialSpec, config_augment_set, trial_args, unaugmented
from tl_hf.lab.study import final_trials

TEST_KEYS = ("test_loss", "test_accuracy", "test_f1", "test_samples")


def validation_rows(session) -> int:
    """Rows of the validation split (every augmentation set shares it)."""
    return len(prepared_for(session, "none", session.model).features["validation"])


def accuracy_objective(session) -> bool:
    """Whether the lab ranks by an accuracy-like metric (one a binomial error applies to)."""
    return session.greater and any(k in session.lab.objective for k in ("accuracy", "f1"))


def validation_margin(session, p: float) -> float:
    """One binomial standard error of an accuracy `p` on the validation split,
    sqrt(p (1 - p) / n): what the split can resolve (`tl_hf.select.rank.standard_error`)."""
    from tl_hf.select.rank import standard_error

    return standard_error(p, validation_rows(session))


def choose_winner(session, summary: list[dict]) -> tuple[dict | None, dict | None]:
    """The configuration to keep: the best mean validation, except where the validation split
    cannot resolve the difference (one binomial standard error of an accuracy on it,
    `validation_margin`: the one-standard-error rule), in two places:
    - an augmented configuration is kept only when it beats the same configuration without
      augmentation (run in the same study) by more than the margin; else that one is the best
      (not the reference: its augmentation is the recipe's own, what the user gets anyway);
    - the session's reference configuration (`Session.reference`: the playbook sets it to the
      recipe default; a plain lab has none) is kept when the best beats it by no more than
      the margin.
    Returns (the chosen summary row, how it was chosen or None)."""
    best = next((c for c in summary if c["rank"] == 1), None)
    accuracy_like = accuracy_objective(session)
    augmentation = None
    weigh = best is not None and accuracy_like and best["config"] != session.reference
    if weigh and config_augment_set(best["config"]) != "none":
        best, augmentation = _weigh_augmentation(session, summary, best)
    best, choice = _weigh_reference(session, summary, best, accuracy_like)
    if augmentation:
        choice = {**(choice or {}), "augmentation": augmentation}
    return best, choice


def _weigh_augmentation(session, summary: list[dict], best: dict) -> tuple[dict, dict | None]:
    """The best, or its unaugmented twin when the best beats it by no more than the margin."""
    twin_config = unaugmented(best["config"])
    twin = next((c for c in summary if c["config"] == twin_config and c["mean"] is not None), None)
    if twin is None:
        return best, None
    margin = validation_margin(session, twin["mean"])
    kept = best["mean"] - twin["mean"] > margin
    return (best if kept else twin), {
        "augmented": best["config"],
        "augmented_mean": best["mean"],
        "plain": twin["config"],
        "plain_mean": twin["mean"],
        "margin": margin,
        "kept_augmentation": kept,
    }


def _weigh_reference(
    session, summary: list[dict], best: dict | None, accuracy_like: bool
) -> tuple[dict | None, dict | None]:
    reference = next(
        (c for c in summary if c["config"] == session.reference and c["mean"] is not None), None
    )
    if best is not None and reference is None and session.reference:
        # the reference was pruned or did not finish: nothing to weigh the best against
        return best, {"reference": session.reference, "reference_mean": None}
    if best is not None and reference is best:
        return best, {"reference": reference["config"], "reference_mean": reference["mean"]}
    if best is None or reference is None or not accuracy_like:
        return best, None
    margin = validation_margin(session, reference["mean"])
    kept = best["mean"] - reference["mean"] <= margin
    return (reference if kept else best), {
        "best": best["config"],
        "best_mean": best["mean"],
        "reference": reference["config"],
        "reference_mean": reference["mean"],
        "validation_rows": validation_rows(session),
        "margin": margin,
        "kept_reference": kept,
    }


def run_winner(session, trial):
    """Rerun the chosen configuration (its best seed) into `lab_dir/winner`, with the test split.
    `trial` is the study's winner trial, or None when the time budget stopped the grid (the
    winner is then the best of the trials that finished, and says so)."""
    from optuna.trial import TrialState

    from tl_hf.lab.page import summarize, trial_rows
    from tl_hf.pipeline import run

    rows = trial_rows(final_trials(session.study))
    best, choice = choose_winner(session, summarize(rows, session.greater))
    if best is None:
        if trial is not None:
            trial.set_user_attr("fail_reason", "no configuration completed")
            session.study.tell(trial, state=TrialState.FAIL)
        return None
    seeds = [r for r in rows if r["config"] == best["config"] and r["state"] == "complete"]
    top = (max if session.greater else min)(seeds, key=lambda r: r["objective_value"])
    spec = TrialSpec.from_attrs(top)
    folder = os.path.join(session.lab_dir, "winner")
    augment = session.augment_sets[spec.augment_set]
    args = trial_args(session.base, spec, augment, folder)
    args = dataclasses.replace(
        args, output=dataclasses.replace(args.output, overwrite_output_dir=True)
    )
    say(
        f"winner: {best['config']}; rerunning seed {spec.seed} (trial {top['number']}) into "
        f"{folder} with the test split",
        who="tl-hf lab",
    )
    result = run(args, prepared=prepared_for(session, spec.augment_set, spec.model))
    objective = result.metrics.get(session.lab.objective)
    winner = {
        **best,
        "trial": top["number"],
        "seed": spec.seed,
        "folder": folder,
        "command": winner_command(session.base, spec, augment, args),
        "validation_rerun": objective,
        "test_metrics": {k: v for k, v in result.metrics.items() if k in TEST_KEYS},
        "pooling": result.args.model.pooling,
        "within_budget_only": trial is None,
        "choice": choice,
    }
    if trial is not None:
        trial.set_user_attr("winner", winner)
        session.study.tell(trial, objective, state=TrialState.COMPLETE)
    return winner


def winner_command(base, spec: TrialSpec, augment, args) -> str:
    """The recipe command that trains the winner alone: the flags the lab was given (not its
    own), the trial's strategy, rate, seed, layers, decay and augmentation (`args`: the
    trial's arguments)."""
    from tl_hf.report.share import reproduce_command, shareable

    lab_keys = {f.name for f in dataclasses.fields(LabArguments)}
    flags = (base.explicit - lab_keys) | {"strategy", "learning_rate", "seed", "output_dir"}
    flags |= {"trainable_layers"} if spec.trainable_layers else set()
    flags |= {"model_name_or_path"} if spec.model else set()
    flags |= {"llrd_decay"} if spec.llrd_decay is not None else set()
    flags |= {"num_train_epochs"} if spec.epochs is not None else set()
    if augment.items != ["none"]:  # None: the modality's default list (the mode asks for it)
        flags |= {"augment_mode"} | ({"augment"} if augment.items is not None else set())
        flags |= {"augment_copies"} if args.augment.augment_mode == "map" else set()
    config = {**shareable(args.to_dict()), "output_dir": f"outputs/{base.modality}_lab_winner"}
    if spec.model:  # the candidate as the user named it, not its resolved folder
        config["model_name_or_path"] = shareable(spec.model)
    launcher = ["python", f"recipes/{base.modality}_classify.py"]
    return reproduce_command(base.modality, config, flags, launcher)
