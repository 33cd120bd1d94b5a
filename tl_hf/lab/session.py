"""One lab session: its study (a real database: SQLite in the lab folder by default, any Optuna
storage for several workers), the arguments every trial starts from, the data shared by the
trials, and the loop that runs the waiting trials until none is left or the time is up.

Above the flow, not in it: every trial runs through `tl_hf.pipeline.run` (`tl_hf.lab.trials`);
selection uses validation only, and the winner is rerun (same configuration, seed and data)
into a complete run folder, the only run scored on the test split (`tl_hf.lab.winner`).
Rerunning a killed lab finishes only what is missing; workers on one storage split the trials.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any

import tl_hf.lab.trials as trials
import tl_hf.lab.winner as winners
from tl_hf.config import RunArgs
from tl_hf.console import say
from tl_hf.lab.grid import LabArguments, TrialSpec
from tl_hf.lab.study import final_trials


def _log(message: str) -> None:
    say(message, who="tl-hf lab")


@dataclass
class LabResult:
    """What a lab returns: one row per trial, the ranked configurations, the winner."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    winner: dict[str, Any] | None
    skipped: list[str]
    lab_dir: str


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
    prepared: dict[tuple, Any] = dataclasses.field(default_factory=dict)  # (model, augment set)
    durations: list[float] = dataclasses.field(default_factory=list)
    # a configuration kept as the winner unless the best beats it by more than the validation
    # split can resolve (`tl_hf.lab.winner.choose_winner`); the playbook's recipe default
    reference: str | None = None
    # configurations the pruner may not stop (the playbook's augmentation step compares them
    # with each other and with none: a pruned one leaves a policy unscored)
    never_prune: set = dataclasses.field(default_factory=set)
    # the candidate checkpoint the playbook's main steps run on (`tl_hf.lab.ladder`); None: the
    # lab's own checkpoint
    model: str | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline


def open_session(base: RunArgs, lab: LabArguments, dataset=None) -> Session:
    """Open (or load) the lab's study; nothing is trained yet."""
    import tl_hf.lab.study as st
    from tl_hf.lab.grid import parse_augment_sets
    from tl_hf.output.ownership import open_output_folder

    deadline = time.time() + lab.time_budget_minutes * 60 if lab.time_budget_minutes else None
    lab_dir = os.path.abspath(base.training.output_dir)
    augment_sets = parse_augment_sets(lab.augment_sets)
    greater = not lab.objective.endswith("loss")
    storage, name = study_location(base, lab)
    # the lab folder owns only what the lab writes (workers share it: no one-writer lock)
    folder = open_output_folder(
        lab_dir, allow_other_files=base.output.allow_other_files, lab=True, log=_log
    )
    try:
        folder.start_writing()
        study = st.open_study(
            storage,
            name,
            "maximize" if greater else "minimize",
            lab.pruner if lab.prune else "none",
            lab.heartbeat_seconds,
            startup_trials=max(2, lab.seeds),
        )
    finally:
        folder.release()  # a lab refused before writing anything leaves no trace
    st.reclaim_interrupted(study, grace_seconds=3 * lab.heartbeat_seconds)
    st.record_lab_args(study, lab_record(base, lab, dataset))
    return Session(study, base, lab, augment_sets, lab_dir, greater, dataset, deadline)


def study_location(base: RunArgs, lab: LabArguments) -> tuple[str, str]:
    """(storage URL, study name) of a lab: `--storage` or lab.db in the lab folder; the study
    is named after the folder unless `--study_name`."""
    from tl_hf.output.names import LAB_DB

    lab_dir = os.path.abspath(base.training.output_dir)
    storage = lab.storage or f"sqlite:///{os.path.join(lab_dir, LAB_DB)}"
    return storage, lab.study_name or os.path.basename(lab_dir)


def lab_record(base: RunArgs, lab: LabArguments, dataset=None) -> dict[str, Any]:
    """The lab's arguments as JSON (kept in the study): the flags the user set and the lab's
    own, without those that only say how this process runs (`--worker`, `--serve`...)."""
    import json

    from tl_hf.lab.grid import PROCESS_FIELDS

    lab_keys = {f.name for f in dataclasses.fields(LabArguments)}
    values = base.to_dict()
    chosen = {k: values[k] for k in sorted(base.explicit) if k in values and k not in lab_keys}
    own = {k: v for k, v in dataclasses.asdict(lab).items() if k not in PROCESS_FIELDS}
    record = {
        "modality": base.modality,
        "base": chosen,
        "lab": own,
        "in_memory": dataset is not None,
    }
    return json.loads(json.dumps(record, default=str))


def args_from_record(record: dict[str, Any], **overrides: Any) -> tuple[RunArgs, LabArguments]:
    """(base, lab) rebuilt from `lab_record` (then `overrides`), checked as `run_lab` checks."""
    from tl_hf.config import build_args_with

    values = {**record["base"], **record["lab"], **overrides}
    values.pop("modality", None)  # the record's own, below
    base, (lab,) = build_args_with(record["modality"], None, extra=(LabArguments,), **values)
    return base, lab


def run_specs(session: Session, specs, then_winner: bool = False):
    """Enqueue `specs` (those not in the study yet) and run waiting trials until none is
    left or the time is up; with `then_winner`, rerun the winner once the grid is done.
    Returns the winner when this worker reran it."""
    from optuna.trial import TrialState

    import tl_hf.lab.study as st

    study, lab = session.study, session.lab
    added = st.enqueue_missing(study, specs)
    if specs:
        _log(f"{len(specs)} trials, {added} new; study {study.study_name!r}")
    winner = None
    while not session.out_of_time():
        trial = st.pop_trial(study)
        if trial is None:
            if not then_winner:
                break
            if not _grid_done(study, specs):
                if _wait_for_others(session, specs):
                    continue  # a silent worker's trial was put back: run it
                break
            if not st.enqueue_missing(study, [{"key": st.WINNER_KEY}]):
                break
            continue  # the winner's rerun was just enqueued: pop it (or let another worker)
        if trial.user_attrs.get("key") == st.WINNER_KEY:
            winner = winners.run_winner(session, trial)
            continue
        spec = TrialSpec.from_attrs(trial.user_attrs)
        started = time.time()
        outcome = trials.run_grid_trial(session, trial, spec)
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
        winner = winners.run_winner(session, None)
    return winner


def _wait_for_others(session: Session, specs) -> bool:
    """Nothing left to start while other workers run trials: watch them (bounded by the time
    budget) until the grid is done or a silent worker's trial is put back. True when there is
    something to do (a trial to run, or the winner to rerun)."""
    from optuna.trial import TrialState

    import tl_hf.lab.study as st

    study, lab = session.study, session.lab
    grace = 3 * lab.heartbeat_seconds
    poll = min(max(lab.heartbeat_seconds / 2, 0.2), 5.0)
    watch = st.SilenceWatch(grace)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    _log(
        f"nothing left to start: waiting for {len(running)} trial(s) on other workers "
        f"(one silent for {grace:.0f} s is rerun here)"
    )
    while not session.out_of_time():
        if st.reclaim_interrupted(study, grace, watch):
            st.enqueue_missing(study, specs)
            _log("a silent worker's trial was put back in the queue")
        if _grid_done(study, specs):
            return True
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            st.enqueue_missing(study, specs)  # closed by another worker, not yet put back
        time.sleep(poll)
    return False


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


def finish(session: Session, specs, winner=None) -> LabResult:
    """Write `lab_results.*` and `lab_report.html` from the study; return the result."""
    from optuna.trial import TrialState

    from tl_hf.lab.page import summarize, trial_rows, write_lab_report, write_results

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
