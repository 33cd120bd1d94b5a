"""The fine-tuning lab: strategies x learning rates x layers x augmentation sets x seeds side by
side, every trial through the recipes' own pipeline, recorded in an Optuna study.

    python -m tl_hf.lab --modality text --strategies frozen llrd full --learning_rates auto --seeds 3
    accelerate launch recipes/lab.py --modality image --augment_sets none light=hflip+rotate
    tl_hf.run_lab(modality="text", strategies=["frozen", "llrd"], seeds=2, train_file="train.csv")

Above the flow, not in it: the lab builds trials and runs each through `tl_hf.pipeline.run`;
it has no training loop of its own. Data is loaded, augmented and preprocessed once per
augmentation set and shared by all trials (frozen trials also share one feature cache);
trial checkpoints are deleted when a trial ends; selection uses validation only, and the
winner is rerun (same configuration, seed and data) into a complete run folder, the only
run scored on the test split. The study lives in a database (SQLite in the lab folder by
default, any Optuna storage with `--storage`): rerunning a killed lab finishes only what is
missing, and workers started on one storage split the trials.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

from tl_hf.config import RunArgs, UserError
from tl_hf.lab.grid import LabArguments, TrialSpec
from tl_hf.lab.study import final_trials

__all__ = [
    "run_playbook",
    "LabArguments",
    "LabResult",
    "Session",
    "finish",
    "main",
    "open_session",
    "run_lab",
    "run_lab_with_args",
    "run_specs",
]


@dataclass
class LabResult:
    """What a lab returns: one row per trial, the ranked configurations, the winner."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    winner: dict[str, Any] | None
    skipped: list[str]
    lab_dir: str


def _log(message: str) -> None:
    print(f"[tl-hf lab] {message}", flush=True)


def _lab_argv(argv: list[str]) -> tuple[str, list[str]]:
    """(modality, the argv for the parser): `--modality` taken out, `--trainable_layers`
    (a list in the lab) renamed to the lab's own field, and the lab's default folder."""
    modality, rest, i = "text", [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--modality" and i + 1 < len(argv):
            modality, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--modality="):
            modality = arg.split("=", 1)[1]
        elif arg == "--trainable_layers" or arg.startswith("--trainable_layers="):
            rest.append(arg.replace("--trainable_layers", "--trainable_layers_grid", 1))
        else:
            rest.append(arg)
        i += 1
    if not any(a == "--output_dir" or a.startswith("--output_dir=") for a in rest):
        rest += ["--output_dir", os.path.join("outputs", f"{modality}_lab")]
    return modality, rest


def main(argv: list[str] | None = None) -> int:
    """`python -m tl_hf.lab ...` / `recipes/lab.py`: exit 2 with one line for user errors."""
    from tl_hf.config import parse_args_with

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        modality, rest = _lab_argv(argv)
        base, (lab,) = parse_args_with(modality, rest, extra=(LabArguments,))
        result = run_lab_with_args(base, lab)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(
            "[tl-hf lab] interrupted: rerun the same command to finish the missing trials",
            file=sys.stderr,
        )
        return 130
    if result.winner:
        _log(
            f"winner: {result.winner['config']} (validation {result.winner['mean']:.4f} +- "
            f"{result.winner['std']:.4f}); report: {os.path.join(result.lab_dir, 'lab_report.html')}"
        )
    return 0


def run_playbook(modality: str = "text", dataset=None, **kwargs: Any) -> LabResult:
    """The playbook (`tl_hf.lab.playbook`): `run_lab(..., playbook=True)`."""
    return run_lab(modality, dataset, playbook=True, **kwargs)


def run_lab(modality: str = "text", dataset=None, **kwargs: Any) -> LabResult:
    """The lab from Python: every recipe keyword plus the lab's (`LabArguments`), e.g.
    `run_lab("text", strategies=["frozen", "llrd"], seeds=2, train_file="train.csv")`.
    `trainable_layers` takes a list here, as on the command line."""
    from tl_hf.config import build_args_with

    if "trainable_layers" in kwargs:
        kwargs["trainable_layers_grid"] = list(kwargs.pop("trainable_layers"))
    kwargs.setdefault("output_dir", os.path.join("outputs", f"{modality}_lab"))
    base, (lab,) = build_args_with(modality, dataset, extra=(LabArguments,), **kwargs)
    return run_lab_with_args(base, lab, dataset)


@dataclass
class Session:
    """One lab run: its study, the arguments every trial starts from, the data prepared per
    augmentation set (shared by the trials), and the clock."""

    study: Any
    base: RunArgs
    lab: LabArguments
    augment_sets: dict[str, Any]  # name -> tl_hf.lab.grid.AugmentSet
    lab_dir: str
    greater: bool
    dataset: Any = None
    deadline: float | None = None
    prepared: dict[str, Any] = dataclasses.field(default_factory=dict)
    durations: list[float] = dataclasses.field(default_factory=list)
    # the playbook's reference configuration (the recipe default): kept as the winner unless
    # the best beats it by more than the validation split can resolve (`choose_winner`)
    reference: str | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline


def open_session(base: RunArgs, lab: LabArguments, dataset=None) -> Session:
    """Open (or load) the lab's study; nothing is trained yet."""
    from tl_hf.lab import study as st
    from tl_hf.lab.grid import parse_augment_sets
    from tl_hf.output.names import LAB_DB
    from tl_hf.output.ownership import open_output_folder

    deadline = time.time() + lab.time_budget_minutes * 60 if lab.time_budget_minutes else None
    lab_dir = os.path.abspath(base.training.output_dir)
    augment_sets = parse_augment_sets(lab.augment_sets)
    greater = not lab.objective.endswith("loss")
    # the lab folder owns only what the lab writes (workers share it: no one-writer lock)
    folder = open_output_folder(
        lab_dir, allow_other_files=base.data.allow_other_files, lab=True, log=_log
    )
    storage = lab.storage or f"sqlite:///{os.path.join(lab_dir, LAB_DB)}"
    try:
        folder.start_writing()
        study = st.open_study(
            storage,
            lab.study_name or os.path.basename(lab_dir),
            "maximize" if greater else "minimize",
            lab.pruner if lab.prune else "none",
            lab.heartbeat_seconds,
            startup_trials=max(2, lab.seeds),
        )
    finally:
        folder.release()  # a lab refused before writing anything leaves no trace
    st.reclaim_interrupted(study, grace_seconds=3 * lab.heartbeat_seconds)
    return Session(study, base, lab, augment_sets, lab_dir, greater, dataset, deadline)


def run_lab_with_args(base: RunArgs, lab: LabArguments, dataset=None) -> LabResult:
    """Run (or continue) the lab described by `base` (the recipe arguments every trial starts
    from) and `lab` (the grid, storage and budget)."""
    from tl_hf.lab.grid import build_grid

    if lab.playbook:
        from tl_hf.lab.playbook import run_playbook_with_args

        return run_playbook_with_args(base, lab, dataset)
    specs = build_grid(base, lab)  # validates the grid before anything is loaded
    session = open_session(base, lab, dataset)
    winner = run_specs(session, specs, then_winner=True)
    return finish(session, specs, winner)


def run_specs(session: Session, specs, then_winner: bool = False):
    """Enqueue `specs` (those not in the study yet) and run waiting trials until none is
    left or the time is up; with `then_winner`, rerun the winner once the grid is done.
    Returns the winner when this worker reran it."""
    from optuna.trial import TrialState

    from tl_hf.lab import study as st

    study, lab = session.study, session.lab
    added = st.enqueue_missing(study, specs)
    _log(f"{len(specs)} trials, {added} new; study {study.study_name!r}")
    winner = None
    while not session.out_of_time():
        trial = st.pop_trial(study)
        if trial is None:
            if not then_winner or not _grid_done(study, specs):
                break
            if not st.enqueue_missing(study, [{"key": st.WINNER_KEY}]):
                break
            continue  # the winner's rerun was just enqueued: pop it (or let another worker)
        if trial.user_attrs.get("key") == st.WINNER_KEY:
            winner = _run_winner(session, trial)
            continue
        spec = TrialSpec(
            **{f.name: trial.user_attrs[f.name] for f in dataclasses.fields(TrialSpec)}
        )
        started = time.time()
        outcome = _run_grid_trial(session, trial, spec)
        session.durations.append(time.time() - started)
        left = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        eta = sum(session.durations) / len(session.durations) * left
        value = "" if outcome.value is None else f" {lab.objective} {outcome.value:.4f}"
        _log(
            f"trial {trial.number} {outcome.state}: {spec.key}{value} ({session.durations[-1]:.0f} s); "
            f"{left} waiting, ETA {eta / 60:.1f} min on this worker"
        )
    if then_winner and winner is None and session.out_of_time() and not _winner_done(study):
        # the budget stopped the grid: the best of what finished still becomes a run folder
        # (outside the study, so a rerun that finishes the grid chooses again)
        winner = _run_winner(session, None)
    return winner


def _winner_done(study) -> bool:
    from optuna.trial import TrialState

    return any(
        t.user_attrs.get("winner")
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )


def _grid_done(study, specs) -> bool:
    from optuna.trial import TrialState

    finals = {t.user_attrs.get("key"): t for t in final_trials(study)}
    return all(
        s.key in finals and finals[s.key].state not in (TrialState.WAITING, TrialState.RUNNING)
        for s in specs
    )


def prepared_for(session: Session, name: str):
    """The data of one augmentation set, loaded, augmented and preprocessed once (base seed)."""
    from tl_hf.lab.grid import trial_args
    from tl_hf.pipeline import plan_run, prepare_data

    base = session.base
    if name not in session.prepared:
        spec = TrialSpec(
            base.strategy.strategy,
            base.training.learning_rate,
            None,
            None,
            name,
            base.training.seed,
        )
        folder = os.path.join(session.lab_dir, "trials", "_data")
        args = trial_args(base, spec, session.augment_sets[name], folder)
        session.prepared[name] = prepare_data(args, plan_run(args), session.dataset)
    return session.prepared[name]


def _run_grid_trial(session: Session, trial, spec):
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from tl_hf.lab.grid import trial_args
    from tl_hf.lab.runner import Outcome, clean_trial_folder, run_trial, without_test
    from tl_hf.lab.study import heartbeat

    lab = session.lab
    folder = os.path.join(session.lab_dir, "trials", f"trial_{trial.number:04d}")
    with heartbeat(session.study, trial, lab.heartbeat_seconds):
        try:
            args = trial_args(session.base, spec, session.augment_sets[spec.augment_set], folder)
            data = without_test(prepared_for(session, spec.augment_set))
        except UserError as err:
            outcome = Outcome("failed", None, {"fail_reason": f"bad combination: {err}"})
        else:
            outcome = run_trial(args, data, trial, lab.objective, lab.prune)
    states = {
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
        "failed": TrialState.FAIL,
    }
    try:
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        session.study.tell(
            trial,
            outcome.value if outcome.state == "complete" else None,
            state=states[outcome.state],
        )
    except UpdateFinishedTrialError:
        # another worker took this trial as silent (a starved heartbeat) and finished it: its
        # record stands; this worker's result is dropped instead of crashing the lab
        _log(f"trial {trial.number} was finished by another worker; this run's result is dropped")
    if not lab.keep_trial_folders:
        clean_trial_folder(folder)
    gc.collect()
    return outcome


def _run_winner(session: Session, trial):
    """Rerun the best configuration (its best seed) into `lab_dir/winner`, with the test split.
    `trial` is the study's winner trial, or None when the time budget stopped the grid (the
    winner is then the best of the trials that finished, and says so)."""
    from optuna.trial import TrialState

    from tl_hf.lab.grid import trial_args
    from tl_hf.lab.report import summarize, trial_rows
    from tl_hf.pipeline import run

    rows = trial_rows(final_trials(session.study))
    summary = summarize(rows, session.greater)
    best, choice = choose_winner(session, summary)
    if best is None:
        if trial is not None:
            trial.set_user_attr("fail_reason", "no configuration completed")
            session.study.tell(trial, state=TrialState.FAIL)
        return None
    seeds = [r for r in rows if r["config"] == best["config"] and r["state"] == "complete"]
    top = (max if session.greater else min)(seeds, key=lambda r: r["objective_value"])
    spec = TrialSpec(
        top["strategy"],
        top["learning_rate"],
        top["trainable_layers"],
        top["llrd_decay"],
        top["augment_set"],
        top["seed"],
    )
    folder = os.path.join(session.lab_dir, "winner")
    augment = session.augment_sets[spec.augment_set]
    args = trial_args(session.base, spec, augment, folder)
    args = dataclasses.replace(args, data=dataclasses.replace(args.data, overwrite_output_dir=True))
    _log(
        f"winner: {best['config']}; rerunning seed {spec.seed} (trial {top['number']}) into {folder} "
        "with the test split"
    )
    result = run(args, prepared=prepared_for(session, spec.augment_set))
    test = {
        k: v
        for k, v in result.metrics.items()
        if k in ("test_loss", "test_accuracy", "test_f1", "test_samples")
    }
    winner = {
        **best,
        "trial": top["number"],
        "seed": spec.seed,
        "folder": folder,
        "command": reproduce_command(session.base, spec, augment),
        "validation_rerun": result.metrics.get(session.lab.objective),
        "test_metrics": test,
        "pooling": result.args.model.pooling,
        "within_budget_only": trial is None,
        "choice": choice,
    }
    if trial is not None:
        trial.set_user_attr("winner", winner)
        session.study.tell(
            trial, result.metrics.get(session.lab.objective), state=TrialState.COMPLETE
        )
    return winner


def choose_winner(session: Session, summary: list[dict]) -> tuple[dict | None, dict | None]:
    """The configuration to keep: the best mean validation, except that the session's
    reference configuration (the playbook's recipe default) is kept when the best beats it by
    no more than one binomial standard error of an accuracy on the validation split,
    sqrt(p (1 - p) / n): a difference the split cannot resolve is not evidence (the
    one-standard-error rule). Returns (the chosen summary row, how it was chosen or None)."""
    import math

    best = next((c for c in summary if c["rank"] == 1), None)
    reference = next(
        (c for c in summary if c["config"] == session.reference and c["mean"] is not None), None
    )
    accuracy_like = session.greater and any(k in session.lab.objective for k in ("accuracy", "f1"))
    if best is not None and reference is None and session.reference:
        # the recipe default was pruned or did not finish: nothing to weigh the best against
        return best, {"reference": session.reference, "reference_mean": None}
    if best is not None and reference is best:
        return best, {"reference": reference["config"], "reference_mean": reference["mean"]}
    if best is None or reference is None or not accuracy_like:
        return best, None
    rows = len(prepared_for(session, "none").features["validation"])
    p = min(max(reference["mean"], 0.0), 1.0)
    margin = math.sqrt(p * (1 - p) / max(rows, 1))
    gain = best["mean"] - reference["mean"]
    kept = gain <= margin
    return (reference if kept else best), {
        "best": best["config"],
        "best_mean": best["mean"],
        "reference": reference["config"],
        "reference_mean": reference["mean"],
        "validation_rows": rows,
        "margin": margin,
        "kept_reference": kept,
    }


def _lab_keys() -> set[str]:
    return {f.name for f in dataclasses.fields(LabArguments)}


def reproduce_command(base: RunArgs, spec: TrialSpec, augment) -> str:
    """The recipe command that trains `spec` alone (the flags the lab was given, the trial's)."""
    values = base.to_dict()
    flags: dict[str, Any] = {
        k: values[k] for k in sorted(base.explicit - _lab_keys() - {"output_dir"}) if k in values
    }
    flags.update(strategy=spec.strategy, learning_rate=spec.learning_rate, seed=spec.seed)
    if spec.trainable_layers:
        flags["trainable_layers"] = spec.trainable_layers
    if spec.llrd_decay is not None:
        flags["llrd_decay"] = spec.llrd_decay
    if augment.items != ["none"]:
        flags["augment"] = augment.items  # None: the modality's default list
        mode = augment.mode or base.augment.augment_mode
        flags["augment_mode"] = mode
        if mode == "map":
            flags["augment_copies"] = augment.copies or base.augment.augment_copies or 1
    words = ["python", f"recipes/{base.modality}_classify.py"]
    for key, value in flags.items():
        if (
            value is None
        ):  # the default augmentation list: --augment_copies/--augment_mode ask for it
            continue
        words.append(f"--{key}")
        words += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    words += ["--output_dir", f"outputs/{base.modality}_lab_winner"]
    return " ".join(shlex.quote(w) for w in words)


def finish(session: Session, specs, winner=None) -> LabResult:
    """Write `lab_results.*` and `lab_report.html` from the study; return the result."""
    from optuna.trial import TrialState

    from tl_hf.lab.report import summarize, trial_rows, write_lab_report, write_results

    study, lab, base, lab_dir, greater = (
        session.study,
        session.lab,
        session.base,
        session.lab_dir,
        session.greater,
    )
    rows = trial_rows(final_trials(study))
    summary = summarize(rows, greater)
    if winner is None:  # another worker (or an earlier run) reran the winner
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("winner")
        ]
        winner = done[-1].user_attrs["winner"] if done else None
    skipped = [r["config"] + f" seed={r['seed']}" for r in rows if r["state"] == "waiting"]
    extra = {
        "objective": lab.objective,
        "greater_is_better": greater,
        "winner": winner,
        "skipped": skipped,
        "modality": base.modality,
    }
    write_results(lab_dir, rows, summary, extra)
    title = f"tl-hf lab: {base.modality}, {len(specs)} trials ranked by validation {lab.objective}"
    write_lab_report(lab_dir, rows, summary, lab.objective, winner, skipped, title)
    if skipped:
        _log(
            f"{len(skipped)} trial(s) not started within the time budget; rerun the command to run them"
        )
    return LabResult(rows, summary, winner, skipped, lab_dir)
