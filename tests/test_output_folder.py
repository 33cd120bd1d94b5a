"""An output folder owns only what tl-hf wrote there, and has one writer at a time
(`tl_hf.output.ownership`): the user's files survive every mode, byte for byte; a second run on
a busy folder is refused naming the first; a lock left by a killed run is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, sentiment_rows, write_csv

from tl_hf.cli.recipe import main
from tl_hf.errors import UserError
from tl_hf.output import names as N
from tl_hf.output.ownership import (
    STALE_SECONDS,
    FolderLock,
    open_output_folder,
    other_entries,
    owned_entries,
)

ENV = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def put_user_files(folder: Path) -> dict[str, bytes]:
    """The user's data files (which the runs read) and unrelated files, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "train.csv", sentiment_rows(60, seed=1))
    write_csv(folder / "validation.csv", sentiment_rows(20, seed=2))
    write_csv(folder / "test.csv", sentiment_rows(20, seed=3))
    (folder / "notes.txt").write_text("my notes, not tl-hf's\n")
    (folder / "drafts").mkdir(exist_ok=True)
    (folder / "drafts" / "idea.md").write_text("keep me\n")
    return snapshot(folder, ["train.csv", "validation.csv", "test.csv", "notes.txt", "drafts"])


def snapshot(folder: Path, names: list[str]) -> dict[str, bytes]:
    files = {}
    for name in names:
        path = folder / name
        for p in [path] if path.is_file() else sorted(path.rglob("*")):
            if p.is_file():
                files[str(p.relative_to(folder))] = p.read_bytes()
    return files


def assert_intact(folder: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        assert (folder / rel).is_file(), f"{rel} was deleted"
        assert (folder / rel).read_bytes() == content, f"{rel} was changed"


def data_flags(folder: Path) -> list[str]:
    return [
        "--train_file",
        str(folder / "train.csv"),
        "--validation_file",
        str(folder / "validation.csv"),
        "--test_file",
        str(folder / "test.csv"),
    ]


def text_argv(model: str, folder: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        model,
        *data_flags(folder),
        "--output_dir",
        str(folder),
        "--num_train_epochs",
        "2",
        "--strategy",
        "full",
        "--use_cpu",
        *extra,
    ]


# -- ownership, on folders made by hand


def test_other_entries_are_what_tl_hf_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "results.csv").write_text("a,b\n")
    assert other_entries(str(tmp_path)) == ["notes.txt", "results.csv"]
    folder = open_output_folder(str(tmp_path), allow_other_files=True, log=print)
    try:
        folder.start_writing()
        manifest = json.loads((tmp_path / N.MANIFEST).read_text())
        assert manifest["other"] == ["notes.txt", "results.csv"]
        # entries tl-hf writes after opening are its own (its names, or claimed when written)
        (tmp_path / "checkpoint-9").mkdir()
        (tmp_path / "config.json").write_text("{}")
        (tmp_path / "later.txt").write_text("the user's, added during the run")
        folder.claim(["config.json"])
        assert owned_entries(str(tmp_path)) == {"checkpoint-9", "config.json"}
        removed = folder.remove_owned()
        assert sorted(removed) == ["checkpoint-9", "config.json"]
        assert sorted(os.listdir(tmp_path)) == sorted(
            ["later.txt", "notes.txt", "results.csv", N.MANIFEST, N.LOCK]
        )
    finally:
        folder.release()
    assert not (tmp_path / N.LOCK).exists()


def test_a_user_file_named_like_tl_hf_output_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(UserError, match="holds your README.md, which tl-hf writes too"):
        open_output_folder(str(tmp_path), allow_other_files=True)
    assert sorted(os.listdir(tmp_path)) == ["README.md"]  # refused: nothing written


def test_remove_owned_never_removes_the_runs_inputs(tmp_path):
    folder = open_output_folder(str(tmp_path), log=lambda m: None)
    try:
        folder.start_writing()
        (tmp_path / "checkpoint-2").mkdir()
        data = tmp_path / "checkpoint-2" / "train.csv"
        data.write_text("text,label\n")
        (tmp_path / "checkpoint-4").mkdir()
        notes = []
        removed = folder.remove_owned(protect=[str(data)], log=notes.append)
        assert removed == ["checkpoint-4"] and data.read_text() == "text,label\n"
        assert notes and "holds this run's input" in notes[0]
    finally:
        folder.release()


def test_a_folder_an_older_tl_hf_wrote_is_adopted(tmp_path):
    for name in ("all_results.json", "config.json", "model.safetensors", "vocab.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    # a plain Trainer's folder (all_results.json, config.json, ...) is not tl-hf's
    assert other_entries(str(tmp_path)) == sorted(os.listdir(tmp_path))
    (tmp_path / "training_history.json").write_text("{}")  # only tl-hf writes this one
    assert other_entries(str(tmp_path)) == ["notes.txt"]
    assert {"config.json", "vocab.txt", "all_results.json"} <= owned_entries(str(tmp_path))


def test_a_run_that_writes_nothing_leaves_no_trace(tmp_path):
    folder = open_output_folder(str(tmp_path / "new" / "deeper"), log=print)
    assert (tmp_path / "new" / "deeper" / N.LOCK).exists()
    folder.release()  # e.g. refused by a later check: the lock and the folders it made go
    assert os.listdir(tmp_path) == []


# -- the lock


def hold_lock_in_child(folder: Path) -> subprocess.Popen:
    """A process that takes the folder's lock and sleeps (a run in progress)."""
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]);"
        "from tl_hf.output.ownership import FolderLock;"
        "FolderLock.acquire(sys.argv[1], print); print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), REPO], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path):
    proc = hold_lock_in_child(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"in use by another tl-hf run \(pid {proc.pid} "):
            FolderLock.acquire(str(tmp_path), print)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    notes = []
    lock = FolderLock.acquire(str(tmp_path), notes.append)
    try:
        assert notes and f"pid {proc.pid}" in notes[0] and "no longer running" in notes[0]
        assert json.loads((tmp_path / N.LOCK).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_lock_from_another_host_counts_until_it_goes_stale(tmp_path):
    lock_file = tmp_path / N.LOCK
    lock_file.write_text(json.dumps({"pid": 1, "host": "other-host", "started": "then"}))
    with pytest.raises(UserError, match="pid 1 on other-host"):
        FolderLock.acquire(str(tmp_path), print)
    old = time.time() - STALE_SECONDS - 5  # its holder stopped refreshing it
    os.utime(lock_file, (old, old))
    notes = []
    FolderLock.acquire(str(tmp_path), notes.append).release()
    assert "other-host" in notes[0] and socket.gethostname() != "other-host"


# -- whole runs


@pytest.mark.slow
def test_user_files_survive_every_mode(tiny_bert, tmp_path, capsys):
    """Plain, refused, --allow_other_files, --overwrite_output_dir, --resume after a kill,
    `tl-hf report`, a lab and a playbook: the user's files (the very data files the runs read
    among them) stay byte for byte."""
    from tl_hf.cli import main as cli_main

    folder = tmp_path / "work"
    files = put_user_files(folder)
    listing = sorted(os.listdir(folder))
    assert main("text", text_argv(tiny_bert, folder)) == 2  # not without saying so
    assert "pass --allow_other_files" in capsys.readouterr().err
    assert sorted(os.listdir(folder)) == listing  # refused: nothing written
    assert main("text", text_argv(tiny_bert, folder, "--allow_other_files")) == 0
    assert_intact(folder, files)
    assert (folder / "all_results.json").is_file() and (folder / "model.safetensors").is_file()
    first = json.loads((folder / N.MANIFEST).read_text())
    assert sorted(first["other"]) == [
        "drafts",
        "notes.txt",
        "test.csv",
        "train.csv",
        "validation.csv",
    ]
    argv = text_argv(tiny_bert, folder, "--allow_other_files", "--overwrite_output_dir")
    assert main("text", argv) == 0
    assert_intact(folder, files)
    # killed mid-run (a process, SIGKILL inside the 2nd evaluation), then --resume
    killed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tests", "kill_driver.py"),
            "text",
            *text_argv(tiny_bert, folder, "--allow_other_files", "--overwrite_output_dir"),
        ],
        env={**ENV, "TL_HF_KILL_AT": "evaluate:2"},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert_intact(folder, files)
    assert (folder / N.LOCK).exists()  # the killed run's lock, taken over next
    capsys.readouterr()
    assert main("text", text_argv(tiny_bert, folder, "--allow_other_files", "--resume")) == 0
    assert "took over the lock" in capsys.readouterr().out
    assert_intact(folder, files)
    assert not (folder / N.LOCK).exists()
    assert cli_main(["report", str(folder)]) == 0
    assert_intact(folder, files)
    # a lab and a playbook, in folders holding the user's files
    from tl_hf import run_lab, run_playbook

    for name, run in (("lab", run_lab), ("playbook", run_playbook)):
        lab_folder = tmp_path / name
        lab_files = put_user_files(lab_folder)
        with pytest.raises(UserError, match="holds files tl-hf did not write"):
            run(
                "text",
                model_name_or_path=tiny_bert,
                train_file=str(lab_folder / "train.csv"),
                output_dir=str(lab_folder),
            )
        options = {"strategies": ["frozen"], "seeds": 1} if name == "lab" else {"seeds": 1}
        result = run(
            "text",
            model_name_or_path=tiny_bert,
            train_file=str(lab_folder / "train.csv"),
            validation_file=str(lab_folder / "validation.csv"),
            test_file=str(lab_folder / "test.csv"),
            output_dir=str(lab_folder),
            allow_other_files=True,
            num_train_epochs=1,
            use_cpu=True,
            time_budget_minutes=2,
            **options,
        )
        assert result.winner is not None
        assert_intact(lab_folder, lab_files)


@pytest.mark.slow
def test_two_runs_on_one_folder(tiny_bert, tmp_path):
    """Two runs started together: one runs, the other exits 2 naming the first; after a kill -9
    of the first, a new run takes its lock over."""
    data = write_csv(tmp_path / "train.csv", sentiment_rows(200))
    out = tmp_path / "out"
    argv = [
        sys.executable,
        os.path.join(REPO, "recipes", "text_classify.py"),
        "--model_name_or_path",
        tiny_bert,
        "--train_file",
        data,
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "5000",  # never ends by itself: a loaded machine once finished 50 before the second ran
        "--early_stopping_patience",
        "0",
        "--use_cpu",
    ]
    first = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / N.LOCK).exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"in use by another tl-hf run (pid {first.pid} " in errors[0]
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()
        first.wait()
    third = subprocess.run(
        [*argv[:-5], "--num_train_epochs", "1", "--use_cpu", "--overwrite_output_dir"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"took over the lock of {out}" in third.stdout and f"pid {first.pid}" in third.stdout
    assert (out / "all_results.json").is_file() and not (out / N.LOCK).exists()
