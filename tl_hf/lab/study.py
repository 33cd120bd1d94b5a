"""The lab's Optuna study: a real database shared by every worker.

Each grid trial is enqueued once as a WAITING Optuna trial carrying its `key`; workers pop
WAITING trials atomically (the storage's WAITING -> RUNNING transition succeeds for one
worker only), so workers on one storage split the trials. Two rules make "each trial runs
exactly once" hold without a lock:

- enqueueing races (two workers starting together both enqueue a key): the trial with the
  smallest number among the live trials of a key is the one that runs; a popped trial with
  an older live twin is closed as a duplicate without running;
- interrupted trials (the worker was killed: its process is gone, or its heartbeat went
  silent) are closed as FAIL without a reason and enqueued again: a worker with nothing left
  to start waits for the others and reruns them, and a rerun of the same command runs them,
  and only them. A pid is checked only by a worker in the same pid space (same machine and
  pid namespace); a worker elsewhere is judged by its heartbeat alone, timed by the database
  server's clock (RDB storages) or by the watcher's own clock (journal files). A silenced
  worker that wakes up finds its trial finished: its result is dropped, never written over.

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
from typing import Any

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
    from tl_hf.lab.storage import creation_lock, make_storage, resolve_url, unreachable

    url = resolve_url(storage_url)
    for attempt in range(5):
        try:
            with creation_lock(url):
                return optuna.create_study(
                    study_name=study_name,
                    storage=make_storage(url, heartbeat_seconds, grace),
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
                friendly = unreachable(url, err)
                if friendly is None:
                    raise
                raise friendly from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _reason(trial) -> str | None:
    return trial.user_attrs.get("fail_reason")


def is_live(trial) -> bool:
    """Waiting, running, or finished for good (complete, pruned, failed with a reason)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return _reason(trial) not in (None, "duplicate")
    return True


def pid_space() -> str:
    """Where a pid means something: this kernel boot and pid namespace. A worker's pid is
    checked only from the same pid space; a worker on another machine (or container) is
    judged by its heartbeat alone."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no /proc: the host name stands in
        return f"host:{socket.gethostname()}"


class SilenceWatch:
    """Heartbeats counted by the lab, for storages without their own (journal files): a
    running trial whose beat count has not moved for `grace_seconds` of this worker's own
    clock is silent. No clock of another machine is read."""

    def __init__(self, grace_seconds: float):
        self.grace = grace_seconds
        self.seen: dict[int, tuple[Any, float]] = {}

    def silent(self, trials) -> list:
        now = time.monotonic()
        out = []
        for trial in trials:
            beat = trial.user_attrs.get("beat")
            last = self.seen.get(trial._trial_id)
            if last is None or last[0] != beat:
                self.seen[trial._trial_id] = (beat, now)
            elif now - last[1] > self.grace:
                out.append(trial)
        return out


def reclaim_interrupted(
    study, grace_seconds: float = 90.0, watch: SilenceWatch | None = None
) -> int:
    """Close RUNNING trials whose worker is gone (same pid space, dead pid) or silent (its
    heartbeat, or claimed more than `grace_seconds` ago by a worker that died before naming
    itself); returns how many were closed. They are enqueued again by `enqueue_missing`.
    `watch` judges heartbeats on storages without their own (it must watch over time)."""
    import datetime

    from optuna.trial import TrialState

    storage = study._storage
    here = pid_space()
    now = datetime.datetime.now()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    counted = watch is not None and not hasattr(storage, "record_heartbeat")  # journal files
    doomed = {t._trial_id for t in watch.silent(running)} if counted else set()
    for trial in running:
        attrs = trial.user_attrs
        if attrs.get("pid_space") == here and attrs.get("pid") and not _alive(attrs["pid"]):
            doomed.add(trial._trial_id)
        if (
            ("pid" not in attrs or "pid_space" not in attrs)  # died before naming itself
            and trial.datetime_start is not None
            and ((now - trial.datetime_start).total_seconds() > grace_seconds)
        ):
            doomed.add(trial._trial_id)
    closed = 0
    for trial_id in doomed:
        try:
            closed += bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
        except Exception:  # another worker closed it first
            continue
    try:  # silent heartbeats timed by the database server's clock (RDB storages only)
        from optuna.storages import fail_stale_trials

        before = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        fail_stale_trials(study)
        closed += before - len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
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
    from optuna.exceptions import UpdateFinishedTrialError
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
        try:
            trial.set_user_attr("host", socket.gethostname())
            # pid_space before pid: a worker killed between the two left a trial no rule closed
            trial.set_user_attr("pid_space", pid_space())
            trial.set_user_attr("pid", os.getpid())
        except UpdateFinishedTrialError:  # another worker's sweep closed it first: next one
            continue
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
    """Beat every `seconds` while the trial runs: the storage's own heartbeat (database
    storages, timed by the server), else a beat count in the trial's attributes (journal)."""
    storage = study._storage
    native = hasattr(storage, "record_heartbeat")
    stop = threading.Event()
    count = [0]

    def beat():
        count[0] += 1
        if native:
            storage.record_heartbeat(trial._trial_id)
        else:
            storage.set_trial_user_attr(trial._trial_id, "beat", count[0])

    def loop():
        while not stop.wait(seconds):
            with contextlib.suppress(Exception):  # a missed beat is not a failure of the trial
                beat()

    with contextlib.suppress(Exception):  # already closed by a watcher (a worker paused
        beat()  # between its claim and its first beat): the trial's end says so, not a crash
    thread = threading.Thread(target=loop, daemon=True)
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
