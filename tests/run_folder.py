"""A tiny finished-run output folder, built by hand, for the report and push tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

LABELS = ["negative", "neutral", "positive"]
WORDS = ["good", "great", "fine", "okay", "bad", "awful", "movie", "the", "was", "plot"]


def tiny_text_model(num_labels: int = 3):
    """A 2-layer BERT with hidden size 16 and its word-level tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tokenizer = BertTokenizer(vocab=vocab)
    labels = (
        LABELS[:num_labels] if num_labels <= len(LABELS) else [f"c{i}" for i in range(num_labels)]
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    import torch

    torch.manual_seed(0)
    return BertForSequenceClassification(config), tokenizer


def synthetic_history(
    eval_losses, train_losses, num_labels=3, early_stopped=False, patience=2
) -> dict:
    """A training history with one evaluation and one training log per epoch."""
    from tl_hf.report import finalize_history, new_history

    history = new_history()
    history.update(
        num_labels=num_labels,
        early_stopping_patience=patience,
        early_stopped=early_stopped,
        num_train_epochs=len(eval_losses),
        finished=True,
    )
    for epoch, (ev, tr) in enumerate(zip(eval_losses, train_losses, strict=True), start=1):
        history["train"].append({"step": epoch * 10 - 5, "epoch": epoch - 0.5, "loss": tr})
        history["train"].append({"step": epoch * 10, "epoch": float(epoch), "loss": tr})
        history["eval"].append(
            {
                "step": epoch * 10,
                "epoch": float(epoch),
                "eval_loss": ev,
                "eval_accuracy": 1 - ev / 3,
            }
        )
        history["learning_rates"].append(
            {
                "step": epoch * 10,
                "epoch": float(epoch),
                "lr": {"head": 1e-3 / epoch, "layer_0": 1e-4 / epoch},
            }
        )
    return finalize_history(history)


def make_run_folder(
    path: str | Path,
    hub_model_id: str | None = "tester/tiny-bert",
    model_name_or_path: str = "google-bert/bert-base-uncased",
    dataset_name: str | None = "stanfordnlp/imdb",
    with_test: bool = True,
) -> Path:
    """Write the files a finished text run leaves in its output folder."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    model, tokenizer = tiny_text_model()
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    # What the pipeline leaves but the Hub must not get.
    (root / "checkpoint-8").mkdir(exist_ok=True)
    (root / "checkpoint-8" / "config.json").write_text("{}")
    (root / "training_args.bin").write_bytes(b"pickled arguments")

    results = {
        "train_loss": 0.41,
        "train_runtime": 3.2,
        "train_samples": 48,
        "eval_loss": 0.52,
        "eval_accuracy": 0.8125,
        "eval_f1": 0.8,
        "eval_samples": 16,
        "best_epoch": 3,
        "stopped_epoch": 5,
        "early_stopped": True,
        "best_checkpoint": str(root / "checkpoint-6"),
        "best_metric": 0.52,
        "metric_for_best_model": "eval_loss",
        "early_stopping_patience": 2,
        "strategy": "llrd",
    }
    if with_test:
        results.update(
            {
                "test_loss": 0.55,
                "test_accuracy": 0.75,
                "test_f1": 0.7333,
                "test_samples": 12,
                "test_per_class": {
                    n: {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4} for n in LABELS
                },
            }
        )
        (root / "test_predictions.json").write_text(
            json.dumps(
                {
                    "labels": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
                    "predictions": [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 2],
                    "label_names": LABELS,
                }
            )
        )
    (root / "all_results.json").write_text(json.dumps(results, indent=2))
    groups = [
        {"name": "embeddings", "depth": 0, "num_params": 400, "lr": 5.12e-5, "weight_decay": 0.01},
        {"name": "layer_1", "depth": 1, "num_params": 3000, "lr": 6.4e-5, "weight_decay": 0.01},
        {"name": "layer_2", "depth": 2, "num_params": 3000, "lr": 8e-5, "weight_decay": 0.01},
        {"name": "head", "depth": 3, "num_params": 51, "lr": 1e-4, "weight_decay": 0.01},
    ]
    (root / "param_groups.json").write_text(json.dumps(groups, indent=2))
    run_config = {
        "modality": "text",
        "model_name_or_path": model_name_or_path,
        "dataset_name": dataset_name,
        "strategy": "llrd",
        "llrd_decay": 0.8,
        "trainable_layers": 0,
        "augment": ["swap", "deletion:p=0.1"],
        "augment_copies": 1,
        "augment_mode": "map",
        "learning_rate": 1e-4,
        "num_train_epochs": 5,
        "seed": 42,
        "output_dir": str(root),
        "hub_model_id": hub_model_id,
        "hub_private_repo": None,
        "push_to_hub": False,
        "early_stopping_patience": 2,
    }
    (root / "run_config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
    history = synthetic_history(
        [0.9, 0.6, 0.52, 0.55, 0.6], [1.0, 0.6, 0.45, 0.35, 0.3], early_stopped=True
    )
    (root / "training_history.json").write_text(json.dumps(history))
    return root
