"""The text recipe end to end on a tiny local model and CSV: through `accelerate launch`,
and every bad input ending with one line and exit status 2 before training."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, sentiment_rows, write_csv

from tl_hf.cli.recipe import main

ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")
LAUNCH = [
    ACCELERATE,
    "launch",
    "--num_processes",
    "1",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def test_accelerate_launch_recipe(tiny_bert, sentiment_csv, tmp_path):
    from transformers import pipeline

    out = tmp_path / "out"
    cmd = [
        *LAUNCH,
        os.path.join(REPO, "recipes", "text_classify.py"),
        "--model_name_or_path",
        tiny_bert,
        "--train_file",
        sentiment_csv,
        "--output_dir",
        str(out),
        "--strategy",
        "llrd",
        "--learning_rate",
        "3e-3",
        "--llrd_decay",
        "0.9",
        "--num_train_epochs",
        "6",
        "--per_device_train_batch_size",
        "8",
        "--validation_split_percentage",
        "20",
        "--test_split_percentage",
        "20",
        "--use_cpu",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ACCELERATE_USE_CPU": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[tl-hf] test: accuracy" in proc.stdout
    results = json.loads((out / "all_results.json").read_text())
    for key in (
        "train_loss",
        "eval_accuracy",
        "eval_f1",
        "test_accuracy",
        "test_f1",
        "train_samples",
        "eval_samples",
        "test_samples",
        "best_epoch",
        "stopped_epoch",
        "early_stopped",
        "best_checkpoint",
        "strategy",
        "test_per_class",
    ):
        assert key in results, key
    assert results["train_samples"] + results["eval_samples"] + results["test_samples"] == 80
    assert results["strategy"] == "llrd"
    assert set(results["test_per_class"]) == {"neg", "pos"}
    # the words decide the label: a tiny BERT learns it
    assert results["test_accuracy"] >= 0.9
    groups = json.loads((out / "param_groups.json").read_text())
    assert {g["depth"] for g in groups} == {0, 1, 2, 3}
    top_lr = max(g["lr"] for g in groups)
    assert top_lr == pytest.approx(3e-3)
    assert all(g["lr"] == pytest.approx(3e-3 * 0.9 ** (3 - g["depth"])) for g in groups)
    assert (out / "run_config.yaml").exists()
    classify = pipeline("text-classification", model=str(out))
    predictions = classify(["the film was great superb", "awful boring plot"])
    assert [p["label"] for p in predictions] == ["pos", "neg"]


def run_main(argv, capsys):
    code = main("text", argv)
    return code, capsys.readouterr().err.strip()


def test_bad_inputs_exit_2_with_one_line_before_training(tiny_bert, tmp_path, capsys):
    csv = write_csv(tmp_path / "d.csv", sentiment_rows(20))
    single = write_csv(
        tmp_path / "single.csv", [{"sentence": f"s{i}", "sentiment": "pos"} for i in range(10)]
    )
    empty = write_csv(
        tmp_path / "empty.csv",
        [{"sentence": "" if i == 2 else f"s{i}", "sentiment": "ab"[i % 2]} for i in range(10)],
    )
    unseen = write_csv(tmp_path / "unseen.csv", [{"sentence": "x", "sentiment": "maybe"}])
    tiny4 = write_csv(
        tmp_path / "tiny.csv", [{"sentence": f"s{i}", "sentiment": "abcd"[i]} for i in range(4)]
    )
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(
        json.dumps(
            {"model_type": "my-secret-arch", "auto_map": {"AutoConfig": "configuration_x.XConfig"}}
        )
    )
    out = str(tmp_path / "never")
    base = ["--model_name_or_path", tiny_bert, "--output_dir", out]
    cases = [
        (
            ["--train_file", csv, "--text_column", "body"],
            "text column 'body' not found; columns are: sentence, sentiment",
        ),
        (["--train_file", single], "single class"),
        (["--train_file", empty], "empty or missing texts"),
        (
            ["--train_file", csv, "--validation_file", unseen],
            "validation labels unseen in training: maybe",
        ),
        (["--train_file", tiny4], "too small to carve"),
        (["--train_file", csv, "--strategy", "partial"], "invalid choice: 'partial'"),
        (["--train_file", csv, "--llrd_decay", "1.2"], "llrd_decay must be in (0, 1]"),
        (["--train_file", str(tmp_path / "missing.csv")], "does not exist"),
        (["--train_file", csv, "--model_name_or_path", str(remote)], "pass --trust_remote_code"),
    ]
    for extra, message in cases:
        code, err = run_main(base + extra, capsys)
        assert code == 2, (extra, err)
        assert message in err, (message, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert not os.path.exists(out), "a failed run must not leave an output folder behind"


def test_finished_output_dir_refused_unless_overwrite(tiny_bert, sentiment_csv, tmp_path, capsys):
    out = str(tmp_path / "o")
    argv = [
        "--model_name_or_path",
        tiny_bert,
        "--train_file",
        sentiment_csv,
        "--output_dir",
        out,
        "--num_train_epochs",
        "1",
        "--use_cpu",
    ]
    assert main("text", argv) == 0
    capsys.readouterr()
    code, err = run_main(argv, capsys)
    assert code == 2 and "already holds a finished run" in err and "--overwrite_output_dir" in err
    before = os.path.getmtime(os.path.join(out, "all_results.json"))
    assert main("text", [*argv, "--overwrite_output_dir"]) == 0
    assert os.path.getmtime(os.path.join(out, "all_results.json")) > before


def test_recipe_process_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "text_classify.py"), "--llrd_decay", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --llrd_decay must be in (0, 1], got 0.0: try 0.8"
    ]


def test_recipe_pushes_best_model_to_hub(tiny_bert, sentiment_csv, tmp_path, monkeypatch, capsys):
    """--push_to_hub against a fake Hub on 127.0.0.1: the model loads back from what was stored,
    and the token is in no stored or local file."""
    from transformers import pipeline

    from tests.hub_server import fake_hub, point_hub_at

    token = "hf_recipeTestToken0123456789"
    out = tmp_path / "pushed"
    with fake_hub(fail_commits=1) as hub:  # the first commit answers 500: the push retries
        point_hub_at(hub, monkeypatch, token)
        code = main(
            "text",
            [
                "--model_name_or_path",
                tiny_bert,
                "--train_file",
                sentiment_csv,
                "--output_dir",
                str(out),
                "--num_train_epochs",
                "5",
                "--strategy",
                "full",
                "--learning_rate",
                "5e-3",
                "--push_to_hub",
                "--hub_model_id",
                "me/tiny-sentiment",
                "--use_cpu",
            ],
        )
        assert code == 0, capsys.readouterr().err
        stored = hub.files("me/tiny-sentiment")
        hub.write_repo("me/tiny-sentiment", tmp_path / "from_hub")
    for name in (
        "config.json",
        "model.safetensors",
        "README.md",
        "training_curves.png",
        "all_results.json",
        "tokenizer_config.json",
    ):
        assert name in stored, name
        assert stored[name] == (out / name).read_bytes()
    assert not any(name.startswith("checkpoint-") for name in stored)
    for name, data in stored.items():
        assert token.encode() not in data
        # no local absolute path in anything pushed (card, report, run_config.yaml, results)
        assert str(tmp_path).encode() not in data, name
        assert os.path.dirname(sentiment_csv).encode() not in data, name
    for path in out.rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes(), path
    classify = pipeline("text-classification", model=str(tmp_path / "from_hub"))
    assert classify("great superb film")[0]["label"] in ("pos", "neg")


def test_map_mode_augmentation_adds_k_copies_and_preview(tiny_bert, sentiment_csv, tmp_path):
    import tl_hf

    out = tmp_path / "aug"
    result = tl_hf.train_text_classifier(
        model_name_or_path=tiny_bert,
        train_file=sentiment_csv,
        output_dir=str(out),
        num_train_epochs=1,
        augment=["deletion:p=0.3", "swap"],
        augment_copies=2,
        augment_preview=3,
        use_cpu=True,
    )
    # 80 rows, 10% validation -> 72 originals, each with 2 augmented copies
    assert result.metrics["train_samples"] == 72 * 3
    assert result.metrics["eval_samples"] == 8
    preview = (out / "augment_preview.txt").read_text()
    assert preview.count("original :") == 3 and preview.count("augmented:") == 3
    with pytest.raises(tl_hf.UserError, match="unknown augmentation 'hflip'"):
        tl_hf.train_text_classifier(
            model_name_or_path=tiny_bert,
            train_file=sentiment_csv,
            output_dir=str(tmp_path / "bad"),
            augment=["hflip"],
        )
    assert not (tmp_path / "bad").exists()


def test_on_the_fly_augmentation_trains(tiny_bert, sentiment_csv, tmp_path):
    import tl_hf

    result = tl_hf.train_text_classifier(
        model_name_or_path=tiny_bert,
        train_file=sentiment_csv,
        output_dir=str(tmp_path / "otf"),
        num_train_epochs=2,
        augment_mode="on_the_fly",
        use_cpu=True,
        strategy="full",
        learning_rate=1e-3,
    )
    assert result.metrics["train_samples"] == 72  # no stored copies
    assert result.args.training.remove_unused_columns is False
    assert result.metrics["stopped_epoch"] == 2
