"""Pushing an output folder to a fake Hub on 127.0.0.1 (tests/hub_server.py)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys

import pytest

from tests.hub_server import fake_hub, point_hub_at
from tests.run_folder import make_run_folder

TOKEN = "hf_FAKEtokenForTests0123456789abcdef"


@pytest.fixture
def hub(monkeypatch):
    with fake_hub() as server:
        point_hub_at(server, monkeypatch, TOKEN)
        yield server


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import json

    from tl_hf.report import build_model_card, write_report_html, write_training_curves

    root = make_run_folder(tmp_path_factory.mktemp("out") / "run")
    write_training_curves(
        json.loads((root / "training_history.json").read_text()), root / "training_curves.png"
    )
    build_model_card(root)
    write_report_html(root)
    return root


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)  # every logger, huggingface_hub's included
    return caplog


def _snapshot(root):
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_no_token(hub, root, logs, capfd):
    for repo in hub.repos.values():
        for path, data in repo["files"].items():
            assert TOKEN.encode() not in data, path
    for path in root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert TOKEN not in logs.text and TOKEN not in out and TOKEN not in err


def test_push_uploads_final_files_and_model_loads(hub, run_dir, tmp_path, logs, capfd):
    from transformers import pipeline

    from tl_hf.output.hub import push_output_dir, select_push_files

    url = push_output_dir(run_dir, "tester/tiny-bert", private=True)
    assert url.startswith(f"{hub.url}/tester/tiny-bert/commit/")
    stored = hub.files("tester/tiny-bert")
    local = select_push_files(run_dir)
    assert sorted(stored) == local
    for name in local:
        assert stored[name] == (run_dir / name).read_bytes(), name
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "tokenizer.json",
        "README.md",
        "training_curves.png",
        "report.html",
        "all_results.json",
        "param_groups.json",
        "run_config.yaml",
        "training_history.json",
    ):
        assert name in stored, name
    assert (
        not any(p.startswith("checkpoint-") for p in stored) and "training_args.bin" not in stored
    )
    assert hub.repos["tester/tiny-bert"]["private"] is True
    writes = [r for r in hub.requests if r.method == "POST"]
    assert {r.path.split("/")[-2] for r in writes} >= {"repos", "preupload", "commit"}
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in writes)

    rebuilt = tmp_path / "from_hub"
    hub.write_repo("tester/tiny-bert", rebuilt)
    classifier = pipeline("text-classification", model=str(rebuilt), device="cpu")
    prediction = classifier("the movie was good")[0]
    assert prediction["label"] in {"negative", "neutral", "positive"}
    _assert_no_token(hub, run_dir, logs, capfd)


def test_push_retries_a_500_on_commit(monkeypatch, run_dir, logs, capfd):
    from tl_hf.output.hub import push_output_dir

    with fake_hub(fail_commits=1) as server:
        point_hub_at(server, monkeypatch, TOKEN)
        push_output_dir(run_dir, "tester/retried", base_delay=0.01)
        assert server.commit_attempts == 2
        assert "config.json" in server.files("tester/retried")
        assert "retrying" in logs.text
        _assert_no_token(server, run_dir, logs, capfd)


def test_push_permanent_failure_keeps_local_output_and_says_how_to_retry(
    monkeypatch, run_dir, logs, capfd
):
    from tl_hf.output.hub import PushError, push_output_dir

    before = _snapshot(run_dir)
    with fake_hub(fail_commits=100, fail_status=503) as server:
        point_hub_at(server, monkeypatch, TOKEN)
        with pytest.raises(PushError) as err:
            push_output_dir(run_dir, "tester/broken", max_attempts=3, base_delay=0.01)
        assert server.commit_attempts == 3
        assert server.files("tester/broken") == {}
    message = str(err.value)
    assert "local output" in message and "intact" in message
    assert f"python -m tl_hf.cli.push {run_dir} --hub_model_id tester/broken" in message
    assert TOKEN not in message
    assert _snapshot(run_dir) == before
    _assert_no_token(server, run_dir, logs, capfd)


def test_push_does_not_retry_a_refusal(monkeypatch, run_dir):
    from tl_hf.output.hub import PushError, push_output_dir

    with fake_hub(fail_commits=100, fail_status=403) as server:
        point_hub_at(server, monkeypatch, TOKEN)
        with pytest.raises(PushError, match="not retried"):
            push_output_dir(run_dir, "tester/refused", base_delay=0.01)
        assert server.commit_attempts == 1


def test_push_refuses_a_file_that_holds_the_token(hub, tmp_path):
    from tl_hf.errors import UserError
    from tl_hf.output.hub import push_output_dir

    root = make_run_folder(tmp_path / "leaky")
    (root / "run_config.yaml").write_text(f"hub_token: {TOKEN}\n")
    with pytest.raises(UserError, match="run_config.yaml contains your Hugging Face token") as err:
        push_output_dir(root, "tester/leaky")
    assert TOKEN not in str(err.value)
    assert not any(r.path.endswith("/commit/main") for r in hub.requests)


def test_push_user_errors(monkeypatch, tmp_path, run_dir):
    from huggingface_hub import constants

    from tl_hf.errors import UserError
    from tl_hf.output.hub import push_output_dir

    with pytest.raises(UserError, match="does not exist"):
        push_output_dir(tmp_path / "missing", "tester/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        push_output_dir(tmp_path / "empty", "tester/x")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        push_output_dir(run_dir, "tester/x")


def test_cli_pushes_an_existing_folder(hub, run_dir, capsys):
    from tl_hf.cli.push import main

    assert main([str(run_dir), "--hub_model_id", "tester/cli-model", "--private"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{hub.url}/tester/cli-model/commit/")
    assert hub.files("tester/cli-model")["config.json"] == (run_dir / "config.json").read_bytes()
    assert hub.repos["tester/cli-model"]["private"] is True
    # the repo id defaults to hub_model_id in run_config.yaml
    assert main([str(run_dir)]) == 0
    assert "tester/tiny-bert" in hub.repos


def test_cli_missing_folder_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tl_hf.cli.push",
            str(tmp_path / "nope"),
            "--hub_model_id",
            "tester/x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]


def test_detach_hub_settings_keeps_the_token_out_of_training_args_bin(tmp_path):
    import io

    import torch
    from transformers import TrainingArguments

    from tl_hf.output.hub import detach_hub_settings

    training = TrainingArguments(
        output_dir=str(tmp_path / "my-run"),
        push_to_hub=True,
        hub_token=TOKEN,
        hub_private_repo=True,
        report_to="none",
        use_cpu=True,
    )
    buffer = io.BytesIO()
    torch.save(training, buffer)
    assert TOKEN.encode() in buffer.getvalue()  # what Trainer would write to training_args.bin
    settings = detach_hub_settings(training)
    assert (settings.push, settings.repo_id, settings.private, settings.token) == (
        True,
        "my-run",
        True,
        TOKEN,
    )
    assert training.push_to_hub is False and training.hub_token is None
    buffer = io.BytesIO()
    torch.save(training, buffer)
    assert TOKEN.encode() not in buffer.getvalue()
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
