"""`tl-hf lab --worker`: run the waiting trials of an existing lab study with the lab's own
runner (`tl_hf.lab.session.run_specs`), on this machine or another one sharing the storage.

The worker takes the lab's arguments from the study (`tl_hf.lab.study.LAB_ARGS_ATTR`, written
when the lab opened it), so only the study's place is needed:

    tl-hf lab --worker --output_dir outputs/text_lab
    tl-hf lab --worker --storage postgresql://... --study_name text_lab --output_dir /shared/lab

Trials queued by the page (`tl-hf ui`) are ordinary WAITING trials; a trial whose worker
was killed is closed and queued again, as the lab does.
"""

from __future__ import annotations

import dataclasses
import os
import time

from tl_hf.console import say
from tl_hf.errors import UserError

REQUEUE_EVERY_S = 30.0  # how often an idle worker looks for trials of killed workers


def load_existing_study(storage: str, name: str):
    """The lab study at `storage`/`name`, never a new one (None when there is none)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage.startswith("sqlite:///") and not os.path.isfile(storage[len("sqlite:///") :]):
        return None
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def worker_args(base, lab):
    """(base, lab) of the lab whose study `base`/`lab` point at (`--output_dir`, `--storage`,
    `--study_name`), rebuilt from what the lab recorded in it."""
    from tl_hf.lab.session import args_from_record, study_location
    from tl_hf.lab.study import lab_args_record

    storage, name = study_location(base, lab)
    study = load_existing_study(storage, name)
    if study is None:
        raise UserError(
            f"--worker: no lab study {name!r} at {storage}: start the lab first (tl-hf lab ...) "
            "or give its --output_dir / --storage and --study_name"
        )
    record = lab_args_record(study)
    if record is None:
        raise UserError(
            f"--worker: the study {name!r} was made by an older tl-hf (no recorded arguments): "
            "rerun the lab's own command instead"
        )
    if record.get("in_memory"):
        raise UserError(
            "--worker: this lab trains on an in-memory dataset (run_lab(dataset=...)), which a "
            "worker cannot load: save it to files and give --train_file"
        )
    where = {"output_dir": base.training.output_dir, "storage": lab.storage}
    where["study_name"] = name
    found_base, found_lab = args_from_record(record, **where)
    keep = {f: getattr(lab, f) for f in ("worker", "worker_idle_minutes", "time_budget_minutes")}
    return found_base, dataclasses.replace(found_lab, **keep)


def waiting(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def requeue_interrupted(study, heartbeat_seconds: float) -> int:
    """Close the trials of killed workers and queue them again (the page's trials have no grid
    to re-enqueue them from: their own records are). Returns how many were queued."""
    import tl_hf.lab.study as st
    from tl_hf.lab.grid import TrialSpec

    st.reclaim_interrupted(study, grace_seconds=3 * heartbeat_seconds)
    lost = [
        TrialSpec.from_attrs(t.user_attrs).attrs()
        for t in study.get_trials(deepcopy=False)
        if not st.is_live(t)
        and t.user_attrs.get("key") not in (None, st.WINNER_KEY)
        and t.user_attrs.get("fail_reason") is None
    ]
    return st.enqueue_missing(study, lost)


def run_worker(base, lab) -> int:
    """Run waiting trials until none is left (and none came for `--worker_idle_minutes`);
    then rewrite the lab's results and report. Returns how many trials this worker ran."""
    from tl_hf.lab.session import finish, open_session, run_specs
    from tl_hf.lab.study import final_trials

    base, lab = worker_args(base, lab)
    session = open_session(base, lab)
    ran, last_work, last_requeue = 0, time.time(), time.time()
    requeue_interrupted(session.study, lab.heartbeat_seconds)
    say(
        f"worker on study {session.study.study_name!r}: {waiting(session.study)} waiting",
        "tl-hf lab",
    )
    while not session.out_of_time():
        if waiting(session.study):
            before = len(session.durations)
            run_specs(session, [])
            ran += len(session.durations) - before
            last_work = time.time()
            continue
        if time.time() - last_work >= lab.worker_idle_minutes * 60:
            break
        if time.time() - last_requeue >= REQUEUE_EVERY_S:
            requeue_interrupted(session.study, lab.heartbeat_seconds)
            last_requeue = time.time()
        time.sleep(1.0)
    if ran:
        finish(session, final_trials(session.study))
    say(f"worker done: {ran} trial(s) run", "tl-hf lab")
    return ran
