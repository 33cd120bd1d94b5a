"""Training monitor, diagnosis, report.html and model card."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re

import pytest

from tests.run_folder import LABELS, make_run_folder, synthetic_history, tiny_text_model

# ----------------------------------------------------------------------------- monitor on a real Trainer

# The metric the fake compute_metrics reports per evaluation: best at epoch 2, then two
# evaluations without improvement, so patience 2 stops the run after epoch 4 of 6.
SCORES = [0.2, 0.6, 0.5, 0.4, 0.9, 0.95]


@pytest.fixture(scope="module")
def early_stopped_run(tmp_path_factory):
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

    from tl_hf.report import CURVES_FILE, MonitorCallback

    out = tmp_path_factory.mktemp("run")
    model, tokenizer = tiny_text_model()
    texts = [
        "the movie was good",
        "the plot was awful",
        "okay movie",
        "great plot",
        "bad movie",
        "fine plot",
        "the movie was bad",
        "good good great",
    ] * 2
    data = Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(len(texts))]})
    data = data.map(
        lambda b: tokenizer(b["text"], padding="max_length", max_length=8), batched=True
    )
    data = data.remove_columns("text")
    calls = []

    def compute_metrics(_):
        calls.append(1)
        return {"score": SCORES[len(calls) - 1]}

    png_hashes = []

    class PngProbe(TrainerCallback):  # runs after MonitorCallback: sees what it just drew
        def on_evaluate(self, args, state, control, **kwargs):
            png_hashes.append(hashlib.sha1((out / CURVES_FILE).read_bytes()).hexdigest())

    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=len(SCORES),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="score",
        greater_is_better=True,
        save_total_limit=1,
        report_to="none",
        use_cpu=True,
        seed=0,
        warmup_steps=2,
    )
    monitor = MonitorCallback(early_stopping_patience=2)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=2), monitor, PngProbe()],
    )
    torch.manual_seed(0)
    trainer.train()
    trainer.evaluate()  # the restored best model, after training: must not become an epoch
    return {"out": out, "monitor": monitor, "trainer": trainer, "png_hashes": png_hashes}


def test_monitor_records_one_eval_per_epoch_and_stops_early(early_stopped_run):
    out, trainer = early_stopped_run["out"], early_stopped_run["trainer"]
    history = json.loads((out / "training_history.json").read_text())
    assert [round(e["epoch"]) for e in history["eval"]] == [1, 2, 3, 4]
    assert [e["eval_score"] for e in history["eval"]] == SCORES[:4]
    assert len(history["after_training"]) == 1
    assert history["early_stopped"] is True and history["stopped_epoch"] == 4
    assert trainer.state.global_step == 16 < trainer.state.max_steps  # really stopped early
    assert history["metric_for_best_model"] == "eval_score" and history["greater_is_better"] is True
    assert history["num_labels"] == 3
    # training loss per logging step (4 steps per epoch, logging_steps=1)
    assert len(history["train"]) == 16 and all(math.isfinite(r["loss"]) for r in history["train"])
    # learning rate per optimizer group: Trainer's two default groups (decay / no decay)
    lrs = history["learning_rates"]
    assert len(lrs) == 16 and len(lrs[0]["lr"]) == 2
    assert lrs[0]["lr"]["group_0"] < lrs[2]["lr"]["group_0"]  # warm-up is visible


def test_monitor_best_epoch_matches_trainer_and_plot(early_stopped_run):
    out, monitor, trainer = (
        early_stopped_run["out"],
        early_stopped_run["monitor"],
        early_stopped_run["trainer"],
    )
    history = json.loads((out / "training_history.json").read_text())
    steps_per_epoch = 4
    trainer_best_epoch = trainer.state.best_global_step // steps_per_epoch
    assert history["best_epoch"] == 2 == trainer_best_epoch
    assert history["best_metric"] == trainer.state.best_metric == 0.6
    assert monitor.last_marks == {"best_epoch": 2, "stop_epoch": 4}


def test_monitor_redraws_png_after_every_evaluation(early_stopped_run):
    out, monitor, hashes = (
        early_stopped_run["out"],
        early_stopped_run["monitor"],
        early_stopped_run["png_hashes"],
    )
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 4 epoch evaluations + the final drawing at train end (with the stop marker)
    assert monitor.plot_writes == 5
    epoch_hashes = hashes[:4]  # the fifth probe is the evaluation after training
    assert len(set(epoch_hashes)) == 4, "the PNG was not redrawn after each evaluation"
    assert not list(out.glob(".*.tmp"))


def test_write_training_curves_marks_best_and_stop(tmp_path):
    from tl_hf.report import write_training_curves

    history = synthetic_history([0.9, 0.5, 0.6, 0.7], [1.0, 0.4, 0.3, 0.2], early_stopped=True)
    marks = write_training_curves(history, tmp_path / "c.png")
    assert marks == {"best_epoch": 2, "stop_epoch": 4}
    history["early_stopped"] = False
    assert write_training_curves(history, tmp_path / "c.png")["stop_epoch"] is None


# ----------------------------------------------------------------------------- diagnosis


def test_diagnose_underfitting_frozen_suggests_unfreezing():
    from tl_hf.report import diagnose

    # 3 classes: chance = log 3 = 1.10; training loss stays at 0.95
    history = synthetic_history([1.05, 1.0, 0.98, 0.97], [1.05, 1.0, 0.97, 0.95])
    result = diagnose(history, strategy="frozen")
    assert result["verdict"] == "underfitting"
    assert "chance" in result["reasons"][0]
    assert any("--trainable_layers" in s for s in result["next_steps"])
    assert any("larger" in s for s in diagnose(history, strategy="full")["next_steps"])


def test_diagnose_overfitting():
    from tl_hf.report import diagnose

    history = synthetic_history(
        [0.6, 0.45, 0.55, 0.7, 0.8], [0.5, 0.2, 0.08, 0.03, 0.01], early_stopped=True
    )
    result = diagnose(history)
    assert result["verdict"] == "overfitting"
    assert any("rose" in r for r in result["reasons"]) and any(
        "gap" in r for r in result["reasons"]
    )
    assert any("first half" in r for r in result["reasons"])
    assert any("augment" in s for s in result["next_steps"])
    assert any("smaller" in s for s in result["next_steps"])


def test_diagnose_healthy_and_still_falling():
    from tl_hf.report import diagnose

    healthy = synthetic_history([0.5, 0.35, 0.3, 0.3, 0.31], [0.6, 0.35, 0.28, 0.25, 0.24])
    result = diagnose(healthy)
    assert result["verdict"] == "healthy", result
    assert result["signals"]["best_loss_epoch"] == 3

    falling = synthetic_history([0.7, 0.5, 0.4], [0.5, 0.35, 0.3])
    result = diagnose(falling, strategy="llrd")
    assert result["verdict"] == "underfitting" and result["signals"]["still_falling"]
    assert "still falling" in result["reasons"][0]
    assert any("epochs" in s for s in result["next_steps"])


def test_a_rising_loss_with_rising_accuracy_is_not_overfitting():
    """Issue 24: the fine-tuned model grows confident, the validation loss rises, the
    validation accuracy improves: not overfitting, and the diagnosis says which signal it read."""
    from tl_hf.report import diagnose

    history = synthetic_history([0.40, 0.48, 0.55, 0.62], [0.30, 0.25, 0.22, 0.20])
    for record, accuracy in zip(history["eval"], [0.73, 0.76, 0.77, 0.78], strict=True):
        record["eval_accuracy"] = accuracy
    result = diagnose(history)
    assert result["verdict"] != "overfitting", result
    assert result["signals"]["overfit_signal"] is None
    assert any("more confident, not worse" in r for r in result["reasons"])
    # the same losses while accuracy falls from its best: overfitting, read on both signals
    for record, accuracy in zip(history["eval"], [0.73, 0.78, 0.74, 0.70], strict=True):
        record["eval_accuracy"] = accuracy
    result = diagnose(history)
    assert result["verdict"] == "overfitting"
    assert result["signals"]["overfit_signal"] == "validation loss"
    assert any("accuracy fell from its best 0.780 to 0.700" in r for r in result["reasons"])


def test_write_diagnosis(tmp_path):
    from tl_hf.report import diagnose, write_diagnosis

    result = diagnose(synthetic_history([0.5, 0.4], [0.3, 0.2]))
    path = write_diagnosis(tmp_path, result)
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))


# ----------------------------------------------------------------------------- report.html


def test_report_html_is_self_contained(tmp_path):
    from tl_hf.report import write_report_html, write_training_curves

    root = make_run_folder(tmp_path / "run")
    write_training_curves(
        json.loads((root / "training_history.json").read_text()), root / "training_curves.png"
    )
    (root / "augment_preview.png").write_bytes((root / "training_curves.png").read_bytes())
    page = (root / "report.html").read_text() if write_report_html(root) else ""
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # curves, preview (the confusion matrix is a shaded table)
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert 'src="http' not in page and "<link" not in page
    assert (
        "Diagnosis: overfitting" in page
    )  # computed from the history when diagnosis.json is absent
    assert "layer_2" in page and "0.8125" in page  # parameter groups, metrics
    # confusion matrix table: true "positive" row is predicted [1, 0, 3], the 3 shaded darkest
    row = re.search(r"<tr><th>positive</th>(.*?)</tr>", page).group(1)
    assert re.findall(r">(\d+)</td>", row) == ["1", "0", "3"]
    shades = [float(x) for x in re.findall(r"rgba\(31,119,180,([0-9.]+)\)", row)]
    assert shades[2] == max(shades) > shades[0] > shades[1] == 0


# ----------------------------------------------------------------------------- model card


def test_model_card_metadata_parses_and_matches_results(tmp_path):
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from tl_hf.report import build_model_card

    root = make_run_folder(tmp_path / "run")
    path = build_model_card(root)
    card = ModelCard.load(path)
    meta = metadata_load(path)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["base_model"] == "google-bert/bert-base-uncased"
    assert meta["datasets"] == ["stanfordnlp/imdb"]
    assert set(meta["metrics"]) == {"accuracy", "f1"}
    assert "tl-hf" in meta["tags"]
    name, evals = model_index_to_eval_results(meta["model-index"])
    assert name == "tester/tiny-bert"
    results = json.loads((root / "all_results.json").read_text())
    got = {(e.dataset_split, e.metric_type): e.metric_value for e in evals}
    want = {
        (split, m): results[f"{p}_{m}"]
        for p, split in (("eval", "validation"), ("test", "test"))
        for m in ("accuracy", "f1")
    }
    assert got == want
    assert all(
        e.task_type == "text-classification" and e.dataset_type == "stanfordnlp/imdb" for e in evals
    )
    assert card.data.eval_results is not None and len(card.data.eval_results) == 4
    text = card.text
    assert 'pipeline("text-classification", model="tester/tiny-bert")' in text
    assert "![training curves](training_curves.png)" not in text  # no PNG in this folder yet
    for needle in (
        "patience 2",
        "stopped early at epoch 5",
        "best epoch, 3",
        "`swap`",
        "layer_2",
        *(f"`{x}`" for x in LABELS),
        "transformers ",
    ):
        assert needle in text, needle


def test_model_card_local_paths_are_not_hub_ids(tmp_path):
    from huggingface_hub import metadata_load

    from tl_hf.report import build_model_card, write_training_curves

    data_file = tmp_path / "train.csv"
    data_file.write_text("text,label\n")
    root = make_run_folder(
        tmp_path / "run",
        model_name_or_path=str(tmp_path),
        dataset_name=str(data_file),
        with_test=False,
        hub_model_id=None,
    )
    write_training_curves(
        json.loads((root / "training_history.json").read_text()), root / "training_curves.png"
    )
    meta = metadata_load(build_model_card(root))
    assert "base_model" not in meta and "datasets" not in meta
    splits = {r["dataset"]["split"] for r in meta["model-index"][0]["results"]}
    assert splits == {"validation"}
    assert "![training curves](training_curves.png)" in (root / "README.md").read_text()


def test_card_and_report_of_an_embedded_default_run_name_no_local_path(tmp_path):
    """The embedded image default (model_name_or_path unset in run_config.yaml) is named by
    its Hub id, with base_model set; no local absolute path reaches the card or report."""
    import yaml
    from huggingface_hub import metadata_load

    from tl_hf.report import build_model_card, write_report_html

    root = make_run_folder(tmp_path / "run", hub_model_id=None, dataset_name="embedded:x")
    config = yaml.safe_load((root / "run_config.yaml").read_text())
    config.update(
        modality="image",
        model_name_or_path=None,
        train_file=str(tmp_path / "somewhere" / "train.csv"),
        command="tl-hf train image --strategy llrd",
    )
    (root / "run_config.yaml").write_text(yaml.safe_dump(config))
    meta = metadata_load(build_model_card(root))
    assert meta["base_model"] == "timm/tf_efficientnet_lite0.in1k"
    card = (root / "README.md").read_text()
    write_report_html(root)
    for text in (card, (root / "report.html").read_text()):
        assert str(tmp_path) not in text
    assert (
        "[timm/tf_efficientnet_lite0.in1k](https://huggingface.co/timm/tf_efficientnet_lite0.in1k)"
        in card
    )
    # what was done, in words: strategy, learning rate per depth, augmentation, stopping
    assert "layer-wise learning-rate decay" in card
    assert "depth 0 (embeddings, 400 parameters): 5.12e-05" in card
    assert "An image classification model fine-tuned from" in card
    # a LoRA adapter of the embedded checkpoint loads on that checkpoint's Hub id
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text("{}")
    build_model_card(root)
    assert (
        'from_pretrained("timm/tf_efficientnet_lite0.in1k", num_labels=3)'
        in (root / "README.md").read_text()
    )
    assert "depth 3 (final norm and head, 51 parameters): 0.0001" in card
    assert "`swap`, `deletion:p=0.1`, 1 stored augmented copy" in card
    assert "stopped early at epoch 5; the best epoch, 3" in card
    reproduce = card.split("## How to reproduce", 1)[1]
    assert "tl-hf train image --config run_config.yaml" in reproduce
    assert "tl-hf train image \\\n    --strategy llrd\n" in reproduce  # one flag per line
    assert "--model_name_or_path timm/tf_efficientnet_lite0.in1k" in reproduce


def test_reproduce_command_parses_back_to_the_same_arguments(tmp_path):
    """The card's command line, given to the recipe's parser, sets what the run had."""
    import shlex

    from tl_hf.config import parse_args
    from tl_hf.report.share import reproduce_command, shareable

    argv = ["--strategy", "frozen", "--trainable_layers", "1", "--learning_rate", "3e-4"]
    argv += ["--augment", "swap", "deletion:p=0.2", "--num_train_epochs", "2", "--use_cpu"]
    argv += ["--output_dir", str(tmp_path / "o"), "--train_file", str(tmp_path / "d.csv")]
    args = parse_args("text", argv)
    config = shareable(args.to_dict())
    command = reproduce_command("text", config, args.explicit)
    assert str(tmp_path) not in command
    words = shlex.split(command)
    assert words[:3] == ["tl-hf", "train", "text"]
    again = parse_args("text", words[3:]).to_dict()
    for key in args.explicit:
        assert again[key] == config[key], key
    assert again["train_file"] == "./d.csv" and again["augment"] == ["swap", "deletion:p=0.2"]


def test_model_card_renders_as_markdown(tmp_path):
    """The card read as the Hub reads it: metadata off, Markdown with tables and code."""
    markdown = pytest.importorskip("markdown")  # installed with tensorboard (extra: trackers)
    from huggingface_hub import ModelCard

    from tl_hf.report import build_model_card, write_training_curves

    root = make_run_folder(tmp_path / "run")
    write_training_curves(
        json.loads((root / "training_history.json").read_text()), root / "training_curves.png"
    )
    page = markdown.markdown(
        ModelCard.load(build_model_card(root)).text, extensions=["tables", "fenced_code"]
    )
    assert page.count("<table>") == 3  # results, per class, parameter groups
    assert "|---" not in page and "| metric |" not in page  # every table was parsed
    assert '<img alt="training curves" src="training_curves.png" />' in page
    blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", page, flags=re.S)
    assert any("pipeline(" in b for b in blocks)
    assert any(b.startswith("tl-hf train text --config run_config.yaml") for b in blocks)
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == [
        "Usage",
        "Results",
        "What was done",
        "How to reproduce",
        "Framework versions",
    ]
