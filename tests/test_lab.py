"""The fine-tuning lab on a tiny BERT: grid, pruning, failures, the shared feature cache, the
winner (the only run scored on test), the report in a real browser, a SIGKILLed lab rerun,
and two workers splitting one study."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import REPO, sentiment_rows, write_csv

LAB_FLAGS = [
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--test_split_percentage",
    "20",
    "--validation_split_percentage",
    "25",
    "--use_cpu",
    "--seeds",
    "2",
]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("labdata") / "train.csv", sentiment_rows(120))


@pytest.fixture(scope="module")
def lab_run(tiny_bert, data_csv, tmp_path_factory):
    """frozen (0 and 5 layers: 5 exceeds the 2 blocks) and full at a good and a hopeless
    learning rate, 2 seeds each; the feature extraction for the cache is counted."""
    import tl_hf.training.features as features
    from tl_hf.lab import run_lab

    calls = Counter()
    original = features._run_rows

    def counting(*args, **kwargs):
        calls["backbone"] += 1
        return original(*args, **kwargs)

    features._run_rows = counting
    per_trial = []
    import tl_hf.lab.trials as runner

    run_trial = runner.run_trial

    def recording(args, *rest, **kwargs):
        before = calls["backbone"]
        outcome = run_trial(args, *rest, **kwargs)
        per_trial.append(
            (
                args.strategy.strategy,
                args.strategy.trainable_layers,
                calls["backbone"] - before,
                outcome.result.metrics.get("cached_features") if outcome.result else None,
            )
        )
        return outcome

    runner.run_trial = recording
    out = tmp_path_factory.mktemp("lab") / "lab"
    try:
        result = run_lab(
            "text",
            model_name_or_path=tiny_bert,
            train_file=data_csv,
            output_dir=str(out),
            strategies=["full", "frozen"],
            learning_rates=["3e-3", "1e-7"],
            trainable_layers=[0, 5],
            seeds=2,
            num_train_epochs=4,
            per_device_train_batch_size=8,
            test_split_percentage=20,
            validation_split_percentage=25,
            use_cpu=True,
        )
    finally:
        features._run_rows = original
        runner.run_trial = run_trial
    return result, out, per_trial


def test_grid_rows_states_and_ranking(lab_run):
    result, out, _ = lab_run
    # full x 2 rates + frozen x 2 rates x 2 layer settings = 6 configurations x 2 seeds
    assert len(result.rows) == 12
    assert len({r["config"] for r in result.rows}) == 6
    states = Counter(r["state"] for r in result.rows)
    assert states["failed"] == 4  # frozen with 5 layers on a 2-block model, both rates, both seeds
    assert all(
        "exceeds the 2 blocks" in r["fail_reason"] for r in result.rows if r["state"] == "failed"
    )
    assert states["complete"] + states["pruned"] == 8
    with open(out / "lab_results.csv") as f:
        assert len(f.read().strip().splitlines()) == 13
    ranked = [c for c in result.summary if c["rank"] is not None]
    means = [c["mean"] for c in ranked]
    assert means == sorted(means, reverse=True)  # accuracy: higher ranks first
    best = ranked[0]
    assert best["config"].startswith("full lr=0.003") and best["mean"] >= 0.9
    for row in result.rows:  # trial folders keep records only: the checkpoints are gone
        folder = out / "trials" / f"trial_{row['number']:04d}"
        assert folder.exists() == (
            row["state"] != "failed"
        )  # bad combinations fail before training
        assert not folder.exists() or not any(
            p.name.startswith("checkpoint-") or p.suffix == ".safetensors" for p in folder.iterdir()
        )


def test_pruned_trial_recorded_with_its_last_metric(lab_run):
    result, _, _ = lab_run
    pruned = [r for r in result.rows if r["state"] == "pruned"]
    hopeless = [r for r in result.rows if r["config"].startswith("full lr=1e-07")]
    assert [r["state"] for r in hopeless] == ["pruned", "pruned"], (
        "it trails the median and must be pruned"
    )
    for row in pruned:
        assert (
            2 <= row["pruned_at_epoch"] < 4
        )  # never in the first epoch (warm-up), stopped before the last
        assert row["objective_value"] == row["curve"][row["pruned_at_epoch"]]


def test_test_split_only_for_the_winner(lab_run):
    from transformers import pipeline

    result, out, _ = lab_run
    for row in result.rows:
        path = out / "trials" / f"trial_{row['number']:04d}" / "all_results.json"
        if path.exists():
            assert not [k for k in json.loads(path.read_text()) if k.startswith("test_")]
    winner = result.winner
    assert winner["config"] == result.summary[0]["config"]
    assert set(winner["test_metrics"]) >= {"test_accuracy", "test_f1", "test_samples"}
    folder = out / "winner"
    results = json.loads((folder / "all_results.json").read_text())
    assert results["test_accuracy"] == winner["test_metrics"]["test_accuracy"]
    # the rerun reproduces the winning trial's validation (same data, configuration, seed)
    trial = next(r for r in result.rows if r["number"] == winner["trial"])
    assert winner["validation_rerun"] == pytest.approx(trial["objective_value"], abs=1e-6)
    assert (folder / "README.md").exists() and (folder / "model.safetensors").exists()
    assert (
        pipeline("text-classification", model=str(folder))("great superb film")[0]["label"] == "pos"
    )
    assert (
        "recipes/text_classify.py" in winner["command"]
        and "--learning_rate 0.003" in winner["command"]
    )


def test_frozen_trials_share_one_feature_cache(lab_run):
    _, _, per_trial = lab_run
    frozen = [t for t in per_trial if t[0] == "frozen" and t[1] == 0]
    assert len(frozen) == 4 and all(t[3] for t in frozen)  # every one trained on cached features
    assert frozen[0][2] > 0  # the first ran the backbone over the splits
    assert [t[2] for t in frozen[1:]] == [0, 0, 0]  # the others: zero backbone forward passes


def test_report_renders_in_a_real_browser(lab_run, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    from PIL import Image

    _, out, _ = lab_run
    page = (out / "lab_report.html").read_text()
    assert "Winner (chosen on validation)" in page and "for the winner only" in page
    shot = tmp_path / "lab.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            f"file://{out / 'lab_report.html'}",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB").resize((120, 140))
    colours = Counter(image.getdata())
    assert len(colours) > 50  # charts and tables, not a blank page
    # the curves chart: matplotlib's tab10 blue and orange appear
    assert any(abs(r - 31) + abs(g - 119) + abs(b - 180) < 60 for r, g, b in colours)


def test_time_budget_skips_and_rerun_finishes(tiny_bert, data_csv, tmp_path):
    from tl_hf.lab import run_lab

    kwargs = dict(
        model_name_or_path=tiny_bert,
        train_file=data_csv,
        output_dir=str(tmp_path / "lab"),
        strategies=["full"],
        learning_rates=["3e-3"],
        seeds=2,
        num_train_epochs=1,
        use_cpu=True,
        validation_split_percentage=25,
    )
    first = run_lab("text", time_budget_minutes=1e-6, **kwargs)
    assert len(first.skipped) == 2 and first.winner is None
    assert "Not run (2)" in (tmp_path / "lab" / "lab_report.html").read_text()
    second = run_lab("text", **kwargs)
    assert second.skipped == [] and Counter(r["state"] for r in second.rows) == {"complete": 2}


def test_time_budget_still_keeps_the_best_finished_as_winner(
    tiny_bert, data_csv, tmp_path, monkeypatch
):
    import tl_hf.lab.trials as trials_module
    from tl_hf.lab import run_lab

    kwargs = dict(
        model_name_or_path=tiny_bert,
        train_file=data_csv,
        output_dir=str(tmp_path / "lab"),
        strategies=["full"],
        learning_rates=["3e-3", "1e-3"],
        seeds=1,
        num_train_epochs=1,
        use_cpu=True,
        validation_split_percentage=25,
    )
    original = trials_module.run_grid_trial

    def one_then_out_of_time(session, trial, spec):
        outcome = original(session, trial, spec)
        session.deadline = 0.0  # the budget is spent once the first trial finished
        return outcome

    monkeypatch.setattr(trials_module, "run_grid_trial", one_then_out_of_time)
    first = run_lab("text", time_budget_minutes=60, **kwargs)
    assert len(first.skipped) == 1 and first.winner["within_budget_only"]
    finished = next(r for r in first.rows if r["state"] == "complete")
    assert first.winner["config"] == finished["config"]
    assert (tmp_path / "lab" / "winner" / "all_results.json").is_file()
    # with time, a rerun finishes the grid and chooses again (the winner trial is in the study)
    monkeypatch.undo()
    second = run_lab("text", **kwargs)
    assert second.skipped == [] and not second.winner["within_budget_only"]
    assert Counter(r["state"] for r in second.rows) == {"complete": 2}


def _lab_command(tiny_bert, data_csv, out, extra=()):
    return [
        sys.executable,
        os.path.join(REPO, "recipes", "lab.py"),
        "--model_name_or_path",
        tiny_bert,
        "--train_file",
        data_csv,
        "--output_dir",
        str(out),
        "--strategies",
        "full",
        "llrd",
        "--learning_rates",
        "3e-3",
        "1e-3",
        *LAB_FLAGS,
        "--prune",
        "false",
        *extra,
    ]


def _trials(db):
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT t.number, t.state, a.key, a.value_json FROM trials t JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id"
        ).fetchall()
    trials = {}
    for number, state, key, value in rows:
        trials.setdefault(number, {"state": state})[key] = json.loads(value)
    return trials


def _finished_once(trials, grid):
    """Each grid key has exactly one finished trial (complete, pruned or failed with a reason)."""
    finished = Counter(
        t["key"]
        for t in trials.values()
        if t.get("key") in grid
        and (
            t["state"] in ("COMPLETE", "PRUNED") or t.get("fail_reason") not in (None, "duplicate")
        )
    )
    return finished


def test_sigkill_then_rerun_runs_only_the_missing_trials(tiny_bert, data_csv, tmp_path):
    out = tmp_path / "lab"
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        _lab_command(tiny_bert, data_csv, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    db = out / "lab.db"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill while a trial runs, after at least two finished
        time.sleep(0.2)
        if not db.exists():
            continue
        try:
            trials = _trials(db).values()
        except sqlite3.OperationalError:
            continue
        states = Counter(t["state"] for t in trials)
        claimed = [t for t in trials if t["state"] == "RUNNING" and "pid" in t]
        if states["COMPLETE"] >= 2 and len(claimed) == 1:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the lab finished before it could be killed"
    before = _trials(db)
    done_before = {n: t["key"] for n, t in before.items() if t["state"] == "COMPLETE"}
    interrupted = [t["key"] for t in before.values() if t["state"] == "RUNNING"]
    assert len(interrupted) == 1
    rerun = subprocess.run(
        _lab_command(tiny_bert, data_csv, out), capture_output=True, text=True, env=env, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _trials(db)
    grid = {t["key"] for t in after.values() if t.get("key") and t["key"] != "__winner__"}
    assert len(grid) == 8  # 2 strategies x 2 rates x 2 seeds
    assert _finished_once(after, grid) == Counter(grid)  # every trial finished, each exactly once
    for number, key in done_before.items():  # finished trials were not rerun
        assert after[number]["state"] == "COMPLETE"
        assert [
            n for n, t in after.items() if t.get("key") == key and t["state"] == "COMPLETE"
        ] == [number]
    # the interrupted trial was closed and run again under a new number
    reruns = [n for n, t in after.items() if t.get("key") == interrupted[0]]
    assert (
        len(reruns) == 2
        and after[min(reruns)]["state"] == "FAIL"
        and after[max(reruns)]["state"] == "COMPLETE"
    )
    results = json.loads((out / "lab_results.json").read_text())
    assert len(results["trials"]) == 8 and all(r["state"] == "complete" for r in results["trials"])
    assert results["winner"] is not None


def test_two_workers_split_the_trials(tiny_bert, data_csv, tmp_path):
    out = tmp_path / "lab"
    env = {**os.environ, "PYTHONPATH": REPO}
    workers = [
        subprocess.Popen(
            _lab_command(tiny_bert, data_csv, out),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    trials = _trials(out / "lab.db")
    grid = {t["key"] for t in trials.values() if t.get("key") and t["key"] != "__winner__"}
    assert len(grid) == 8
    assert _finished_once(trials, grid) == Counter(grid)  # each trial run exactly once
    pids = Counter(
        t["pid"] for t in trials.values() if t.get("key") in grid and t["state"] == "COMPLETE"
    )
    assert len(pids) == 2, f"both workers must have run trials: {pids}"
    winners = [
        t for t in trials.values() if t.get("key") == "__winner__" and t["state"] == "COMPLETE"
    ]
    assert len(winners) == 1  # exactly one worker reran the winner


def test_the_last_evaluation_is_never_pruned():
    from types import SimpleNamespace

    from tl_hf.lab.trials import ReportToOptuna

    class Trial:  # a trial the pruner would stop at every evaluation
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    trial = Trial()
    callback = ReportToOptuna(trial, "eval_accuracy", prune=True)
    callback.on_train_begin(None, None, None)
    for epoch, step in ((1, 10), (2, 20)):
        control = SimpleNamespace(should_training_stop=False)
        state = SimpleNamespace(epoch=float(epoch), global_step=step, max_steps=20)
        callback.on_evaluate(None, state, control, metrics={"eval_accuracy": 0.5 + epoch / 10})
        assert control.should_training_stop == (epoch == 1), epoch
    assert trial.reported == [(1, 0.6), (2, 0.7)] and callback.pruned_at == 1
