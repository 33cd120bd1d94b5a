"""Heartbeats of lab workers, without training (fast, no root): a watcher closes a running
trial only when its heartbeat is silent, by the storage's own heartbeat (database storages)
or by the lab's beat count (journal files), never by a pid from another pid space."""

from __future__ import annotations

import time

import pytest

import tl_hf.lab.study as st


def _study(url):
    return st.open_study(url, "beats", "maximize", "none", 1.0)


def _claimed(study):
    st.enqueue_missing(study, [{"key": "k0"}])
    trial = st.pop_trial(study)
    assert trial is not None
    return trial


def _state(study, trial) -> str:
    return study._storage.get_trial(trial._trial_id).state.name


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_beating_trial_is_never_closed_a_silent_one_is(tmp_path, kind):
    url = (
        f"sqlite:///{tmp_path / 'lab.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'j.log'}"
    )
    study = _study(url)
    trial = _claimed(study)
    trial.set_user_attr("pid_space", "another-machine")  # its pid means nothing here
    watch = st.SilenceWatch(grace_seconds=0.3)
    with st.heartbeat(study, trial, seconds=0.1):  # beating
        for _ in range(6):
            assert st.reclaim_interrupted(study, grace_seconds=0.3, watch=watch) == 0
            time.sleep(0.1)
        assert _state(study, trial) == "RUNNING"
    # silent now: closed after the grace period (database: by the server's clock, grace 3 s
    # for a 1 s heartbeat; journal: by this watcher's clock)
    deadline = time.time() + 10
    while _state(study, trial) == "RUNNING" and time.time() < deadline:
        st.reclaim_interrupted(study, grace_seconds=0.3, watch=watch)
        time.sleep(0.2)
    assert _state(study, trial) == "FAIL"
    assert st.enqueue_missing(study, [{"key": "k0"}]) == 1  # queued again


def test_a_dead_pid_in_this_pid_space_is_closed_at_once(tmp_path):
    study = _study(f"sqlite:///{tmp_path / 'lab.db'}")
    trial = _claimed(study)
    trial.set_user_attr("pid", 2**22 + 12345)  # no such process
    assert st.reclaim_interrupted(study) == 1 and _state(study, trial) == "FAIL"


def test_a_worker_killed_before_it_named_its_pid_space_is_closed_after_the_grace(tmp_path):
    """Killed between claiming a trial and recording where its pid means something (no
    heartbeat row yet): the trial is closed once the grace has passed, not waited on for ever
    (a rerun lab waited until its test's timeout)."""
    from optuna.trial import TrialState

    study = _study(f"sqlite:///{tmp_path / 'lab.db'}")
    st.enqueue_missing(study, [{"key": "k0"}])
    (waiting,) = study.get_trials(deepcopy=False)
    storage = study._storage  # claimed and named by pid only, as the killed worker left it
    assert storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    storage.set_trial_user_attr(waiting._trial_id, "pid", 2**22 + 12345)
    assert st.reclaim_interrupted(study, grace_seconds=60) == 0  # within the grace: running
    time.sleep(0.3)
    assert st.reclaim_interrupted(study, grace_seconds=0.2) == 1
    assert _state(study, waiting) == "FAIL"
    # pop_trial names the pid space first, so a recorded pid always has it
    trial = _claimed(study)
    assert "pid_space" in storage.get_trial(trial._trial_id).user_attrs


def test_a_trial_closed_between_claim_and_naming_is_passed_over(tmp_path, monkeypatch):
    """Another worker's sweep may close a trial in the instant after this worker claimed it
    and before it wrote its host and pid: the worker takes the next waiting trial."""
    from optuna.trial import TrialState

    study = _study(f"sqlite:///{tmp_path / 'lab.db'}")
    st.enqueue_missing(study, [{"key": "k0"}, {"key": "k1"}])
    storage = study._storage
    claim = storage.set_trial_state_values
    swept = []

    def claim_then_swept(trial_id, state, values=None):
        won = claim(trial_id, state, values)
        if state == TrialState.RUNNING and not swept:  # the other worker's sweep, now
            swept.append(trial_id)
            claim(trial_id, TrialState.FAIL)
        return won

    monkeypatch.setattr(storage, "set_trial_state_values", claim_then_swept)
    trial = st.pop_trial(study)
    assert trial is not None and trial._trial_id != swept[0]
    assert trial.user_attrs["key"] == "k1" and trial.user_attrs["pid"] > 0
    assert storage.get_trial(swept[0]).state == TrialState.FAIL
