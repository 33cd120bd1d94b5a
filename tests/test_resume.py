"""Durability: atomic files, complete checkpoints, unfinished folders, and runs killed with
SIGKILL at chosen points (tests/kill_driver.py) then resumed with `--resume` reaching the
same best epoch, metrics and history as an uninterrupted run; Ctrl-C and SIGTERM."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port, sentiment_rows, write_csv

from tl_hf.cli.launch import accelerate_launch
from tl_hf.errors import UserError
from tl_hf.output import atomic
from tl_hf.output.folder import (
    MONITOR_STATE,
    check_output_dir,
    checkpoint_problem,
    latest_complete_checkpoint,
)

DRIVER = os.path.join(REPO, "tests", "kill_driver.py")


# -- atomic files and complete checkpoints (unit)
def test_atomic_write_leaves_old_file_or_new_never_half(tmp_path):
    path = tmp_path / "f.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write('{"a": 2, "half')  # a writer that dies half way
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["f.json"]  # no temporary file left behind
    atomic.write_yaml(tmp_path / "c.yaml", {"b": [1, 2]})
    assert (tmp_path / "c.yaml").read_text() == "b:\n- 1\n- 2\n"


def _save_weights(folder, n=64):
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(n)}, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def _fake_checkpoint(folder, step, monitor=True):
    weights = _save_weights(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": 1.0}))
    if monitor:
        (folder / MONITOR_STATE).write_text("{}")
    return weights


def test_truncated_safetensors_detected(tmp_path):
    weights = _save_weights(tmp_path)
    assert atomic.safetensors_complete(weights)
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    assert not atomic.safetensors_complete(weights)
    weights.write_bytes(data[:5])
    assert not atomic.safetensors_complete(weights)


def test_latest_complete_checkpoint_skips_partial_ones(tmp_path):
    _fake_checkpoint(tmp_path / "checkpoint-4", 4)
    _fake_checkpoint(tmp_path / "checkpoint-8", 8)
    weights = _fake_checkpoint(tmp_path / "checkpoint-12", 12)
    weights.write_bytes(weights.read_bytes()[:-4])  # killed while writing the weights
    _fake_checkpoint(tmp_path / "checkpoint-16", 16, monitor=False)  # killed before the history
    (tmp_path / "checkpoint-20").mkdir()  # killed right after mkdir
    assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-8")
    assert "truncated" in checkpoint_problem(str(tmp_path / "checkpoint-12"))
    assert "trainer_state" in checkpoint_problem(str(tmp_path / "checkpoint-20"))
    # unfinished: refused with both ways forward named, picked up with --resume
    with pytest.raises(UserError, match="unfinished run .*checkpoint-8.*--resume.*--overwrite"):
        check_output_dir(str(tmp_path), overwrite=False, explicit=True)
    assert check_output_dir(str(tmp_path), False, True, resume=True) == str(
        tmp_path / "checkpoint-8"
    )
    assert check_output_dir(str(tmp_path), True, True) is None
    (tmp_path / "all_results.json").write_text("{}")
    with pytest.raises(UserError, match="nothing to resume"):
        check_output_dir(str(tmp_path), False, True, resume=True)


# -- kill and resume (real processes, real SIGKILL)
def _noisy_csv(path):
    rows = sentiment_rows(60, seed=1)
    rng = random.Random(0)
    for row in rows:  # label noise: the tiny model overfits and early stopping triggers
        if rng.random() < 0.25:
            row["sentiment"] = "neg" if row["sentiment"] == "pos" else "pos"
    return write_csv(path, rows)


def _argv(model, data, out):
    return [
        "text",
        "--model_name_or_path",
        model,
        "--train_file",
        data,
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "12",  # room after the best epoch: early stopping, not the epoch limit, ends the run
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "3",
        "--strategy",
        "full",
        "--learning_rate",
        "1e-2",
        "--warmup_steps",
        "0",
        "--early_stopping_patience",
        "2",
        "--validation_split_percentage",
        "20",
        "--use_cpu",
        "--seed",
        "3",
    ]


def _run(argv, kill_at=None, expect=0, send=None):
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("TL_HF_KILL_AT", None)
    if kill_at:
        env["TL_HF_KILL_AT"] = kill_at
    proc = subprocess.run(
        [sys.executable, DRIVER, *argv], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == expect, (kill_at, proc.returncode, proc.stderr[-3000:])
    return proc


EVAL_KEYS = ("step", "epoch", "eval_loss", "eval_accuracy", "eval_f1")


def _summary(out):
    results = json.loads((out / "all_results.json").read_text())
    history = json.loads((out / "training_history.json").read_text())
    return results, history


def _assert_same_run(a, b):
    (ra, ha), (rb, hb) = a, b
    for key in ("best_epoch", "stopped_epoch", "early_stopped", "eval_samples", "train_samples"):
        assert ra[key] == rb[key], key
    for key in ("eval_loss", "eval_accuracy", "eval_f1", "best_metric"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-7), key
    assert os.path.basename(ra["best_checkpoint"]) == os.path.basename(rb["best_checkpoint"])
    assert len(ha["eval"]) == len(hb["eval"])
    for ea, eb in zip(ha["eval"], hb["eval"], strict=True):
        for key in EVAL_KEYS:
            assert eb[key] == pytest.approx(ea[key], rel=1e-5, abs=1e-7), key
    assert [r["step"] for r in ha["train"]] == [r["step"] for r in hb["train"]]
    assert [r["step"] for r in ha["learning_rates"]] == [r["step"] for r in hb["learning_rates"]]
    for key in ("best_epoch", "stopped_epoch", "early_stopped", "finished"):
        assert ha[key] == hb[key], key


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("kill")
    data = _noisy_csv(root / "noisy.csv")
    base = root / "uninterrupted"
    _run(_argv(tiny_bert, data, base))
    return tiny_bert, data, root, _summary(base)


def test_killed_anywhere_then_resumed_matches_uninterrupted(kill_setup):
    """One run killed six times (data preparation, during an evaluation, while saving a
    checkpoint, mid-epoch, during the evaluation that stops it early, after the report but
    before the finished marker), resumed each time: same best epoch, metrics and history as
    the run that was never interrupted, early-stopping patience counter included."""
    model, data, root, expected = kill_setup
    _, history = expected
    assert history["early_stopped"] and history["best_epoch"] < history["stopped_epoch"]
    out = root / "killed"
    argv = _argv(model, data, out)
    steps_per_epoch = history["eval"][0]["step"]
    _run(argv, "data", expect=-signal.SIGKILL)
    assert not (out / "all_results.json").exists()
    # nothing to resume yet: --resume starts afresh; killed inside the 2nd evaluation
    _run([*argv, "--resume"], "evaluate:2", expect=-signal.SIGKILL)
    assert latest_complete_checkpoint(str(out)).endswith(f"checkpoint-{steps_per_epoch}")
    # a plain rerun refuses the unfinished folder in one line
    proc = _run(argv, expect=2)
    assert proc.stderr.strip().splitlines() == [
        f"error: --output_dir {out} holds an unfinished run (last complete checkpoint "
        f"checkpoint-{steps_per_epoch}, epoch 1): pass --resume to continue it, or "
        "--overwrite_output_dir to start over"
    ]
    # --resume_from_checkpoint PATH still works; killed while saving its first checkpoint
    first = str(out / f"checkpoint-{steps_per_epoch}")
    _run([*argv, "--resume_from_checkpoint", first], "save:1", expect=-signal.SIGKILL)
    assert latest_complete_checkpoint(str(out)) == first  # the half-saved one is skipped
    # mid-epoch, in the epoch after the best one
    best = history["best_epoch"]
    _run([*argv, "--resume"], f"step:{best * steps_per_epoch + 2}", expect=-signal.SIGKILL)
    assert latest_complete_checkpoint(str(out)).endswith(f"checkpoint-{best * steps_per_epoch}")
    # inside the evaluation that stops the run early: the last checkpoint holds a patience
    # counter of 1, which the resumed run must continue from to stop where the other did
    _run(
        [*argv, "--resume"],
        f"evaluate:{history['stopped_epoch'] - best}",
        expect=-signal.SIGKILL,
    )
    last = latest_complete_checkpoint(str(out))
    assert last.endswith(f"checkpoint-{(history['stopped_epoch'] - 1) * steps_per_epoch}")
    state = json.loads(Path(last, "trainer_state.json").read_text())
    stopper = state["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]
    assert stopper["early_stopping_patience_counter"] == history["stopped_epoch"] - best - 1
    # after the card and report, before the finished marker: the folder is still unfinished
    _run([*argv, "--resume"], "final", expect=-signal.SIGKILL)
    assert (out / "report.html").exists() and not (out / "all_results.json").exists()
    _run([*argv, "--resume"])
    _assert_same_run(expected, _summary(out))
    for name in ("README.md", "report.html", "diagnosis.json", "training_curves.png"):
        assert (out / name).stat().st_mtime <= (out / "all_results.json").stat().st_mtime, name


def test_lp_ft_resumed_in_its_fine_tuning_phase_does_not_probe_again(kill_setup):
    """LP-FT killed while saving its 2nd fine-tuning checkpoint, then resumed: the probe phase
    is taken from the checkpoint (not trained again: the log says so and the phase history
    is the recorded one), and the run ends as the uninterrupted LP-FT run did."""
    model, data, root, _ = kill_setup

    def argv(out):
        flags = _argv(model, data, out)
        flags[flags.index("full")] = "lp_ft"
        return [*flags, "--lp_ft_probe_epochs", "2"]

    _run(argv(root / "lp_ft"))
    expected = _summary(root / "lp_ft")
    out = root / "lp_ft_killed"
    _run(argv(out), "save:2", expect=-signal.SIGKILL)
    assert not (out / "all_results.json").exists()
    proc = _run([*argv(out), "--resume"])
    log = proc.stdout + proc.stderr
    assert "resume: phase 1 (linear probe) is in checkpoint-" in log, log
    assert "lp_ft: linear probe for 2 epoch(s)" in log  # the strategy asked for it
    resumed = _summary(out)
    _assert_same_run(expected, resumed)
    (probe,), (probe_expected,) = resumed[1]["phases"], expected[1]["phases"]
    assert probe["name"] == "linear probe" and len(probe["eval"]) == 2
    for part, key in (("train", "loss"), ("eval", "eval_loss")):
        assert [r["step"] for r in probe[part]] == [r["step"] for r in probe_expected[part]]
        got = [r[key] for r in probe[part]]
        assert got == pytest.approx([r[key] for r in probe_expected[part]], rel=1e-5)


@pytest.mark.parametrize("name,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_prints_one_line_with_resume_command(kill_setup, name, code):
    model, data, root, expected = kill_setup
    out = root / name
    argv = _argv(model, data, out)
    steps_per_epoch = expected[1]["eval"][0]["step"]
    proc = _run([*argv, "--overwrite_output_dir"], f"signal:{name}:{steps_per_epoch + 2}", code)
    # one line, the last thing written (after the progress bar's carriage returns)
    lines = proc.stderr[proc.stderr.index("stopped by") :].strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    checkpoint = out / f"checkpoint-{steps_per_epoch}"
    assert lines[0].startswith(
        f"stopped by {name} during training at epoch {(steps_per_epoch + 2) / steps_per_epoch:.2f}, "
        f"step {steps_per_epoch + 2}; "
        f"last complete checkpoint {checkpoint} (epoch 1); resume with: python {DRIVER} text "
        f"--model_name_or_path {model} "
    )
    assert lines[0].endswith(" --resume") and "--overwrite_output_dir" not in lines[0]
    assert checkpoint_problem(str(checkpoint), need_monitor=True) is None
    assert not (out / "all_results.json").exists()


@pytest.mark.distributed
def test_ctrl_c_stops_both_ranks_of_a_two_process_launch(tiny_bert, tmp_path):
    """Ctrl-C sends SIGINT to the whole process group (launcher and both ranks): each rank
    stops with status 130, rank 0 prints the one line, the last checkpoint stays complete."""
    import glob
    import time

    out, exits = tmp_path / "out", tmp_path / "exits"
    exits.mkdir()
    data = write_csv(tmp_path / "d.csv", sentiment_rows(80))
    cmd = [
        *accelerate_launch(),
        "--config_file",
        os.path.join(REPO, "accelerate_configs", "cpu_2proc.yaml"),
        "--main_process_port",
        str(free_port()),
        DRIVER,
        *_argv(tiny_bert, data, out),
        "--num_train_epochs",
        "30",
        "--early_stopping_patience",
        "0",  # the run must still be training when Ctrl-C comes
        "--disable_tqdm",
        "true",
    ]
    env = {**os.environ, "PYTHONPATH": REPO, "TL_HF_EXIT_DIR": str(exits)}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    start = time.time()
    while not glob.glob(str(out / "checkpoint-*" / MONITOR_STATE)) and time.time() - start < 300:
        time.sleep(0.5)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert sorted(os.listdir(exits)) == ["rank0.exit", "rank1.exit"], err[-3000:]
    assert {(exits / n).read_text() for n in os.listdir(exits)} == {"130"}
    lines = [line for line in err.splitlines() if line.startswith("stopped by SIGINT")]
    assert len(lines) == 1 and lines[0].endswith(" --resume"), err[-3000:]
    # the exact launch command, config file included
    assert (
        f"resume with: accelerate launch --config_file {' '.join(cmd[4:7])} {DRIVER} text "
        in lines[0]
    )
    # the ranks print no traceback (the launcher's own SignalException is torch's)
    assert "tl_hf" not in err.split("stopped by SIGINT")[1]
    latest = latest_complete_checkpoint(str(out))
    assert latest is not None and latest in lines[0]
