"""The lab's Optuna study: a real database shared by every worker.

Each grid trial is enqueued once as a WAITING Optuna trial carrying its `key`; workers pop
WAITING trials atomically (the storage's WAITING -> RUNNING transition succeeds for one
worker only), so workers on one storage split the trials. Two rules make "each trial runs
exactly once" hold without a lock:

- enqueueing races (two workers starting together both enqueue a key): the trial with the
  smallest number among the live trials of a key is the one that runs; a popped trial with
  an older live twin is closed as a duplicate without running;
- interrupted trials (the worker was killed: its process is gone, or its heartbeat went
  silent) are closed as FAIL without a reason and enqueued again, so a rerun of the same
  command runs them, and only them.

A trial that failed for a reason (NaN loss, out of memory, a bad combination) is finished:
it is recorded with the reason and not rerun.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from contextlib import contextmanager

WINNER_KEY = "__winner__"  # the winner's rerun is a trial too: exactly one worker runs it


def open_study(
    storage_url: str,
    study_name: str,
    direction: str,
    pruner: str,
    heartbeat_seconds: float,
    startup_trials: int = 2,
):
    """Create or load the study (any Optuna storage URL, or journal:PATH). The pruner judges
    a trial from its second epoch on, once `startup_trials` trials have finished."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats are marked experimental; the lab relies on them knowingly
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    grace = max(3 * heartbeat_seconds, 1.0)
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=startup_trials, n_warmup_steps=2
        ),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=2),
        "none": optuna.pruners.NopPruner,
    }
    for attempt in range(5):
        try:
            with _creation_lock(storage_url):
                return optuna.create_study(
                    study_name=study_name,
                    storage=_storage(storage_url, heartbeat_seconds, grace),
                    direction=direction,
                    pruner=pruners[pruner](),
                    load_if_exists=True,
                )
        except Exception as err:  # workers on other machines racing to create the schema
            text = f"{type(err).__name__} {err}"
            racing = any(
                s in text for s in ("IntegrityError", "already exists", "database is locked")
            )
            if attempt == 4 or not racing:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def _creation_lock(storage_url: str):
    """Workers on one machine create a SQLite study one at a time (a file lock beside the
    database): two creating its tables at once fail ("table ... already exists")."""
    if not storage_url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = storage_url[len("sqlite:///") :] + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _storage(storage_url: str, heartbeat_seconds: float, grace: float):
    import optuna

    if storage_url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(storage_url[len("journal:") :]))
    # SQLite: wait for the other workers' writes instead of failing with "database is locked"
    kwargs = {"connect_args": {"timeout": 120}} if storage_url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(
        storage_url,
        engine_kwargs=kwargs,
        heartbeat_interval=int(max(heartbeat_seconds, 1)),
        grace_period=int(grace),
    )


def _reason(trial) -> str | None:
    return trial.user_attrs.get("fail_reason")


def is_live(trial) -> bool:
    """Waiting, running, or finished for good (complete, pruned, failed with a reason)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return _reason(trial) not in (None, "duplicate")
    return True


def reclaim_interrupted(study, grace_seconds: float = 90.0) -> int:
    """Close RUNNING trials whose worker is gone (same host, dead pid) or silent (heartbeat,
    or claimed more than `grace_seconds` ago by a worker that died before naming itself);
    returns how many were closed. They are enqueued again by `enqueue_missing`."""
    import datetime

    from optuna.trial import TrialState

    storage = study._storage
    closed = 0
    host = socket.gethostname()
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        dead = attrs.get("host") == host and attrs.get("pid") and not _alive(attrs["pid"])
        nameless = (
            "pid" not in attrs
            and trial.datetime_start is not None
            and ((now - trial.datetime_start).total_seconds() > grace_seconds)
        )
        if dead or nameless:
            try:
                closed += bool(storage.set_trial_state_values(trial._trial_id, TrialState.FAIL))
            except Exception:  # another worker closed it first
                continue
    try:  # silent heartbeats, from any machine (storages without heartbeats skip this)
        from optuna.storages import fail_stale_trials

        fail_stale_trials(study)
    except Exception:
        pass
    return closed


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def enqueue_missing(study, specs) -> int:
    """Enqueue every spec whose key has no live trial yet; returns how many were enqueued."""
    live = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False) if is_live(t)}
    added = 0
    for spec in specs:
        attrs = spec if isinstance(spec, dict) else spec.attrs()
        if attrs["key"] not in live:
            study.enqueue_trial({}, user_attrs=attrs)
            added += 1
    return added


def pop_trial(study):
    """Claim the next WAITING trial (None when none is left). Duplicates are closed here."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    while True:
        waiting = sorted(
            study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number
        )
        claimed = None
        for frozen in waiting:
            if storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                claimed = frozen
                break
        if claimed is None:
            return None
        trial = optuna.Trial(study, claimed._trial_id)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        key = claimed.user_attrs.get("key")
        twins = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("key") == key and t.number < claimed.number and is_live(t)
        ]
        if not twins:
            return trial
        trial.set_user_attr("fail_reason", "duplicate")
        study.tell(trial, state=TrialState.FAIL)


@contextmanager
def heartbeat(study, trial, seconds: float):
    """Record the trial's heartbeat every `seconds` while it runs (storages that keep them)."""
    storage = study._storage
    if not hasattr(storage, "record_heartbeat"):
        yield
        return
    stop = threading.Event()

    def beat():
        while not stop.wait(seconds):
            with contextlib.suppress(Exception):  # a missed beat is not a failure of the trial
                storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def final_trials(study) -> list:
    """The trial that counts for each key (the live one), grid trials only, by number."""
    out = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        key = trial.user_attrs.get("key")
        if key and key != WINNER_KEY and is_live(trial):
            out.setdefault(key, trial)
    return sorted(out.values(), key=lambda t: t.number)


# -- what a page or a worker reads from the study besides its trials

LAB_ARGS_ATTR = "tl_hf_lab"  # the lab's arguments: a worker or a page rebuilds them from here
WINNER_MARK_ATTR = "tl_hf_marked_winner"  # a configuration marked as the winner in the page


def _stop_key(number: int) -> str:
    return f"tl_hf_stop:{int(number)}"


def request_stop(study, number: int) -> None:
    """Ask the worker running trial `number` to stop it at its next evaluation (a study
    attribute: every worker on the storage reads it, wherever it runs)."""
    study._storage.set_study_user_attr(study._study_id, _stop_key(number), True)


def stop_requested(study, number: int) -> bool:
    """Whether the page asked to stop trial `number` (read from the storage, not a cache)."""
    attrs = study._storage.get_study_user_attrs(study._study_id)
    return bool(attrs.get(_stop_key(number)))


def record_lab_args(study, record: dict) -> None:
    """Keep the lab's arguments (JSON) in the study, so a worker started with only the storage
    (`tl-hf lab --worker`) and the page (`tl-hf ui`) rebuild them."""
    old = study._storage.get_study_user_attrs(study._study_id).get(LAB_ARGS_ATTR) or {}
    sets = list((record.get("lab") or {}).get("augment_sets") or [])
    added = [s for s in (old.get("lab") or {}).get("augment_sets") or [] if s not in sets]
    if added:  # sets the page added stay: their trials may still be waiting
        record = {**record, "lab": {**record["lab"], "augment_sets": sets + added}}
    if old != record:
        study._storage.set_study_user_attr(study._study_id, LAB_ARGS_ATTR, record)


def lab_args_record(study) -> dict | None:
    return study._storage.get_study_user_attrs(study._study_id).get(LAB_ARGS_ATTR)


def refresh_augment_sets(session) -> None:
    """Add the augmentation sets recorded in the study since the session opened (the page
    queues trials on sets of its own)."""
    from tl_hf.lab.grid import parse_augment_sets

    record = lab_args_record(session.study) or {}
    items = (record.get("lab") or {}).get("augment_sets") or []
    for name, value in parse_augment_sets(items).items():
        session.augment_sets.setdefault(name, value)
