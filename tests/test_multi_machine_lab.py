"""A lab shared by three "machines" (root only): two network namespaces, each worker in its own
pid and UTS namespace (a pid means nothing across them), plus one worker on the host, on one
study in a throwaway PostgreSQL server (or a journal file in a shared folder). One remote
worker is SIGKILLed mid-trial, the other SIGSTOPped mid-trial (alive, heartbeat silent): both
trials are put back and finished once by the host worker; the stopped worker, continued,
does not overwrite the finished record; the winner and `lab_results.csv` equal a one-worker
run of the same grid and seeds. Cost: about 40 s per storage (three worker start-ups)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import REPO, sentiment_rows, write_csv
from netns import UNAVAILABLE as NETNS_UNAVAILABLE
from netns import Namespaces
from pg_server import UNAVAILABLE as PG_UNAVAILABLE

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(NETNS_UNAVAILABLE is not None, reason=str(NETNS_UNAVAILABLE)),
]

GRID = ["--strategies", "full", "llrd", "--learning_rates", "3e-3", "1e-3", "3e-4", "--seeds", "1"]
FLAGS = [
    *GRID,
    "--objective",
    "eval_loss",  # distinct values per trial: the winner is a real choice
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--test_split_percentage",
    "20",
    "--validation_split_percentage",
    "25",
    "--use_cpu",
    "--prune",
    "false",
]
HEARTBEAT = 2.0  # a worker silent for 3 beats (6 s) is judged gone
DEADLINE_S = 240  # every wait below is bounded by this
# the columns a rerun must reproduce (numbers, times, pids differ between runs)
SAME = ("config", "strategy", "learning_rate", "llrd_decay", "seed", "state", "objective_value")


@pytest.fixture(scope="module")
def lab_data(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("multilab")
    return tiny_bert, write_csv(folder / "train.csv", sentiment_rows(120))


@pytest.fixture(scope="module")
def reference(lab_data, tmp_path_factory):
    """The same grid and seeds on one worker (SQLite, in this process)."""
    from tl_hf.lab import run_lab

    model, data = lab_data
    out = tmp_path_factory.mktemp("reference") / "lab"
    result = run_lab(
        "text",
        model_name_or_path=model,
        train_file=data,
        output_dir=str(out),
        strategies=["full", "llrd"],
        learning_rates=["3e-3", "1e-3", "3e-4"],
        seeds=1,
        objective="eval_loss",
        num_train_epochs=2,
        per_device_train_batch_size=8,
        test_split_percentage=20,
        validation_split_percentage=25,
        use_cpu=True,
        prune=False,
    )
    return result, _csv(out / "lab_results.csv")


@pytest.fixture
def machines():
    spaces = Namespaces()
    try:
        yield spaces
    finally:
        spaces.close()


def _csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = [{k: r[k] for k in SAME} for r in csv.DictReader(handle)]
    return sorted(rows, key=lambda r: r["config"] + r["seed"])


def _command(lab_data, out, storage):
    model, data = lab_data
    return [
        sys.executable,
        os.path.join(REPO, "recipes", "lab.py"),
        "--model_name_or_path",
        model,
        "--train_file",
        data,
        "--output_dir",
        str(out),
        "--storage",
        storage,
        "--study_name",
        "shared",
        "--heartbeat_seconds",
        str(HEARTBEAT),
        *FLAGS,
    ]


_VIEWS: dict = {}


def _trials(study_url: str) -> list:
    """The study's trials as the test sees them (one storage per URL: no connection leak)."""
    import optuna

    from tl_hf.lab.storage import make_storage, resolve_url

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if study_url not in _VIEWS:
        _VIEWS[study_url] = make_storage(resolve_url(study_url), HEARTBEAT, 6)
    try:
        study = optuna.load_study(study_name="shared", storage=_VIEWS[study_url])
    except KeyError:  # not created yet
        return []
    return study.get_trials(deepcopy=False)


def _forget(study_url: str) -> None:
    storage = _VIEWS.pop(study_url, None)
    if storage is not None and hasattr(storage, "engine"):
        storage.engine.dispose()


def _running_on(trials, host: str):
    for t in trials:
        a = t.user_attrs
        if t.state.name == "RUNNING" and a.get("host") == host and "pid_space" in a:
            return t
    return None


def _wait(condition, what: str, deadline: float):
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _machines(machines):
    """Two namespaces, each linked to the host: [(namespace, host's address on its link)]."""
    spaces = [machines.add(n) for n in ("m1", "m2")]
    return [(ns, machines.link_to_host(ns)[0]) for ns in spaces]


def _run_lab_across_machines(machines, remote_spaces, lab_data, tmp_path, storage_for, view):
    """Two remote workers and, once one is killed and the other stopped, one host worker.
    `storage_for(host_address_or_None)` is the --storage URL a worker uses; `view` the
    test's own."""
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    deadline = time.time() + DEADLINE_S
    logs = {}
    remote = {}
    for i, (ns, host_address) in enumerate(remote_spaces, start=1):
        name = f"machine{i}"
        logs[name] = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115
        cmd = _command(lab_data, tmp_path / name, storage_for(host_address))
        remote[name] = machines.spawn(
            ns, cmd, hostname=name, stdout=logs[name], stderr=subprocess.STDOUT, env=env
        )

    def second_claim():  # a remote worker that finished a trial and runs the next
        trials = _trials(view)
        done = Counter(t.user_attrs.get("host") for t in trials if t.state.name == "COMPLETE")
        return next(
            ((n, t) for n in remote if done[n] and (t := _running_on(trials, n)) is not None),
            None,
        )

    killed_host, killed = _wait(second_claim, "a remote worker's second trial", deadline)
    os.kill(machines.leaf_pid(remote[killed_host]), signal.SIGKILL)
    stopped_host = next(n for n in remote if n != killed_host)
    stopped = _wait(
        lambda: _running_on(_trials(view), stopped_host), "the other to claim one", deadline
    )
    stopped_pid = machines.leaf_pid(remote[stopped_host])
    os.kill(stopped_pid, signal.SIGSTOP)
    logs["host"] = open(tmp_path / "host.log", "w")  # noqa: SIM115
    host = machines.spawn(
        None,
        _command(lab_data, tmp_path / "host", storage_for(None)),
        stdout=logs["host"],
        stderr=subprocess.STDOUT,
        env=env,
    )

    def stopped_key_done():
        return any(
            t.user_attrs.get("key") == stopped.user_attrs["key"] and t.state.name == "COMPLETE"
            for t in _trials(view)
        )

    _wait(stopped_key_done, "the stopped worker's trial to be finished elsewhere", deadline)
    os.kill(stopped_pid, signal.SIGCONT)
    for proc in (host, remote[stopped_host]):
        proc.wait(timeout=max(1, deadline - time.time()))
    remote[killed_host].wait(timeout=30)
    for handle in logs.values():
        handle.close()
    text = {n: (tmp_path / f"{n}.log").read_text() for n in logs}
    assert host.returncode == 0, text["host"][-3000:]
    assert remote[stopped_host].returncode == 0, text[stopped_host][-3000:]
    return killed, stopped, _trials(view), text, stopped_host


def _check(result, reference, tmp_path):
    killed, stopped, trials, text, stopped_host = result
    ref_result, ref_rows = reference
    grid = {
        t.user_attrs["key"] for t in trials if t.user_attrs.get("key", "__winner__") != "__winner__"
    }
    assert len(grid) == 6
    complete = Counter(t.user_attrs["key"] for t in trials if t.state.name == "COMPLETE")
    assert all(complete[k] == 1 for k in grid), complete  # no configuration ran twice
    for lost in (killed, stopped):  # closed without a reason, then rerun once elsewhere
        record = next(t for t in trials if t.number == lost.number)
        assert record.state.name == "FAIL" and "fail_reason" not in record.user_attrs
        again = [
            t
            for t in trials
            if t.user_attrs.get("key") == lost.user_attrs["key"] and t.state.name == "COMPLETE"
        ]
        assert len(again) == 1 and again[0].user_attrs["host"] != lost.user_attrs["host"]
    # the continued worker found its trial finished and dropped its result
    assert f"trial {stopped.number} was finished by another worker" in text[stopped_host]
    hosts = Counter(t.user_attrs.get("host") for t in trials if t.state.name == "COMPLETE")
    assert hosts[killed.user_attrs["host"]] >= 1 and len(hosts) >= 2, hosts  # a split grid
    winners = [t for t in trials if t.user_attrs.get("key") == "__winner__"]
    assert [t.state.name for t in winners] == ["COMPLETE"]
    assert winners[0].user_attrs["winner"]["config"] == ref_result.winner["config"]
    for name in ("host", stopped_host):  # every surviving worker wrote the same results
        assert _csv(tmp_path / name / "lab_results.csv") == ref_rows


@pytest.mark.skipif(PG_UNAVAILABLE is not None, reason=str(PG_UNAVAILABLE))
def test_lab_on_postgresql_across_three_machines_kill_and_stop_40s(
    machines, lab_data, reference, tmp_path
):
    from pg_server import PgServer

    remote = _machines(machines)
    server = PgServer(listen=tuple(address for _, address in remote))
    try:
        result = _run_lab_across_machines(
            machines,
            remote,
            lab_data,
            tmp_path,
            lambda address: server.url(address or "127.0.0.1"),
            server.url(),
        )
    finally:
        machines.close()  # the workers first, then their server
        _forget(server.url())
        server.stop()
    _check(result, reference, tmp_path)


def test_lab_on_a_shared_journal_file_across_three_machines_kill_and_stop_40s(
    machines, lab_data, reference, tmp_path
):
    journal = f"journal:{tmp_path / 'shared_folder' / 'lab.journal'}"
    result = _run_lab_across_machines(
        machines, _machines(machines), lab_data, tmp_path, lambda _: journal, journal
    )
    _check(result, reference, tmp_path)
