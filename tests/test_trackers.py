"""`--report_to tensorboard trackio`: offline, into the output folder, with the learning rate
of every parameter group, the evaluation metrics, the final metrics and the diagnosis, read
back from the files each tracker writes."""

from __future__ import annotations

import json
import math
import sqlite3
import sys

import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("trackio")


def read_tensorboard(log_dir):
    """{tag: [(step, value)]} for scalars and {tag: [text]} for texts, from every event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}
    texts = {
        t.removesuffix("/text_summary"): [
            e.tensor_proto.string_val[0].decode() for e in events.Tensors(t)
        ]
        for t in events.Tags()["tensors"]
        if t.endswith("/text_summary")
    }
    return scalars, texts


def read_trackio(db_path, run_name):
    """The rows trackio stored for a run (its local SQLite database), and its system metrics."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
        rows = [
            json.loads(m)
            for (m,) in con.execute(
                "SELECT metrics FROM metrics WHERE run_name = ? ORDER BY id", (run_name,)
            )
        ]
        system = con.execute("SELECT COUNT(*) FROM system_metrics").fetchone()[0]
    return rows, system


def test_tensorboard_and_trackio_receive_group_lrs_evals_final_metrics_and_diagnosis(
    tiny_bert, sentiment_csv, tmp_path, monkeypatch
):
    import tl_hf

    monkeypatch.delenv("TRACKIO_DIR", raising=False)  # tl-hf sets it; restored afterwards
    out = tmp_path / "tracked"
    connections = []
    watching = [True]

    def audit(event, args):  # audit hooks cannot be removed: this one stops recording after
        if watching[0] and event == "socket.connect" and isinstance(args[1], tuple):
            connections.append(args[1])

    sys.addaudithook(audit)
    result = tl_hf.train_text_classifier(
        model_name_or_path=tiny_bert,
        train_file=sentiment_csv,
        output_dir=str(out),
        num_train_epochs=2,
        logging_steps=1,
        strategy="llrd",
        test_split_percentage=20,
        report_to=["tensorboard", "trackio"],
        use_cpu=True,
    )
    watching[0] = False
    assert connections == []  # offline: no server, no Space, no network
    results = json.loads((out / "all_results.json").read_text())
    groups = json.loads((out / "param_groups.json").read_text())
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    steps = len(json.loads((out / "training_history.json").read_text())["train"])
    assert steps == result.metrics.get("train_steps", steps) and steps > 4
    names = [g["name"] for g in groups]
    assert len(names) > 2

    scalars, texts = read_tensorboard(out / "tensorboard")
    for name in names:  # every group, every logging step
        assert [s for s, _ in scalars[f"lr/{name}"]] == list(range(1, steps + 1)), name
    base = {g["name"]: g["lr"] for g in groups}
    # llrd: at every step each group runs at its base rate times the same schedule factor
    for step in range(1, steps + 1):
        factor = scalars[f"lr/{names[-1]}"][step - 1][1] / base[names[-1]]
        for name in names:
            assert math.isclose(
                scalars[f"lr/{name}"][step - 1][1], base[name] * factor, rel_tol=1e-5, abs_tol=1e-12
            )
    # group 0's rate is what transformers logs as the learning rate
    assert [v for _, v in scalars[f"lr/{names[0]}"]] == pytest.approx(
        [v for _, v in scalars["train/learning_rate"]], rel=1e-6
    )
    # one evaluation per epoch (steps 4 and 8); the restored best model is not evaluated again
    # (its evaluation during training is reused: tl_hf.pipeline.recorded_evaluation)
    evals = [s for s, _ in scalars["eval/accuracy"]]
    assert evals == [steps // 2, steps]
    for key in ("test_accuracy", "eval_f1", "best_epoch"):
        assert math.isclose(scalars[f"final/{key}"][0][1], results[key], rel_tol=1e-6), key
    assert diagnosis["verdict"] in texts["diagnosis"][0]

    rows, system_rows = read_trackio(out / "trackio" / "tl-hf.db", "tracked")
    assert system_rows == 0  # no CPU/GPU sampler
    logged = {k for row in rows for k in row}
    assert {f"lr/{n}" for n in names} <= logged
    assert [row["train/global_step"] for row in rows if "eval/accuracy" in row] == evals
    final = next(row for row in rows if "final/test_accuracy" in row)
    assert math.isclose(final["final/test_accuracy"], results["test_accuracy"], rel_tol=1e-9)
    assert diagnosis["verdict"] in final["diagnosis"]["_value"]
    lr_rows = [row for row in rows if f"lr/{names[0]}" in row]
    assert [row["train/global_step"] for row in lr_rows] == list(range(1, steps + 1))
