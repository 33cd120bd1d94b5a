"""Cached features for frozen backbones: the replayed head scores as the full model does, reruns
read the cache without running the backbone, on-the-fly augmentation is refused or skipped, and
the saved folder is a normal checkpoint that `pipeline()` loads."""

import json
from pathlib import Path

import pytest
import torch
from conftest import sentiment_rows, write_csv

from tl_hf.errors import UserError


def _pad_collator(pad_id):
    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        batch = {
            "input_ids": torch.tensor(
                [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
            ),
            "attention_mask": torch.tensor(
                [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
            ),
        }
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows])
        return batch

    return collate


def _token_dataset(vocab, n=10, seed=0):
    import random

    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    rows = {"input_ids": [], "labels": []}
    for i in range(n):
        length = rng.randint(3, 12)  # different lengths: padding must not change the features
        rows["input_ids"].append([0] + [rng.randint(5, vocab - 1) for _ in range(length)] + [2])
        rows["labels"].append(i % 3)
    ds = Dataset.from_dict(rows)
    return DatasetDict(train=ds, validation=ds.select(range(4)), test=ds.select(range(4, 10)))


def _tiny(family):
    import transformers as tf

    common = dict(
        vocab_size=40,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        num_labels=3,
    )
    if family == "bert":
        return tf.BertForSequenceClassification(tf.BertConfig(num_hidden_layers=2, **common)), 0
    if family == "roberta":
        return tf.RobertaForSequenceClassification(
            tf.RobertaConfig(num_hidden_layers=2, pad_token_id=1, **common)
        ), 1
    if family == "distilbert":
        return tf.DistilBertForSequenceClassification(
            tf.DistilBertConfig(
                vocab_size=40,
                dim=16,
                n_layers=2,
                n_heads=2,
                hidden_dim=32,
                max_position_embeddings=40,
                num_labels=3,
            )
        ), 0
    if family == "deberta-v2":
        return tf.DebertaV2ForSequenceClassification(
            tf.DebertaV2Config(num_hidden_layers=2, **common)
        ), 0
    raise ValueError(family)


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta", "deberta-v2"])
def test_replayed_head_scores_as_full_model(family, tmp_path, monkeypatch):
    import datasets
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from tl_hf.strategy import apply_strategy, head_parameter_names
    from tl_hf.training.features import build_feature_cache, feature_collator

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model, pad_id = _tiny(family)
    apply_strategy(model, "frozen")
    dsd = _token_dataset(40)
    collate = _pad_collator(pad_id)
    training = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        per_device_eval_batch_size=4,
        report_to="none",
    )
    cache = build_feature_cache(
        model, dsd, collate, head_parameter_names(model), training, log=lambda m: None
    )
    model.eval()
    with torch.no_grad():
        cached = model(
            **{
                k: v
                for k, v in feature_collator(list(cache.features["test"])).items()
                if k != "labels"
            }
        ).logits
    cache.restore()
    # only the first token's state (or pooled output) is stored, not the whole sequence
    assert all(
        cache.features["test"][0][c].shape[0] == 1
        for c in cache.columns
        if c.endswith("last_hidden_state")
    )
    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        full = reloaded(
            **{k: v for k, v in collate(list(dsd["test"])).items() if k != "labels"}
        ).logits
    assert torch.allclose(cached, full, atol=1e-5), (cached - full).abs().max()


def test_head_inside_backbone_is_refused_by_name():
    from tl_hf.training.features import CannotCache, find_backbone

    model, _ = _tiny("bert")
    with pytest.raises(CannotCache, match="BertForSequenceClassification"):
        find_backbone(model, {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"})


@pytest.fixture
def csv_file(tmp_path):
    return write_csv(tmp_path / "data.csv", sentiment_rows(60))


def _run(tiny_bert, csv_file, out, **extra):
    from tl_hf.pipeline import train_text_classifier

    kwargs = dict(
        model_name_or_path=tiny_bert,
        train_file=csv_file,
        output_dir=str(out),
        strategy="frozen",
        num_train_epochs=3,
        per_device_train_batch_size=8,
        validation_split_percentage=20,
        test_split_percentage=20,
        use_cpu=True,
        learning_rate=5e-2,
    )  # the early-stopping preset
    kwargs.update(extra)
    return train_text_classifier(**kwargs)


def test_rerun_reuses_cache_and_output_loads_in_pipeline(
    tiny_bert, csv_file, tmp_path, monkeypatch
):
    from transformers import pipeline
    from transformers.models.bert import modeling_bert

    calls = []
    original = modeling_bert.BertModel.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertModel, "forward", counting)
    first = _run(tiny_bert, csv_file, tmp_path / "a")
    assert first.metrics["cached_features"] is True
    assert calls  # the backbone ran to build the cache
    calls.clear()
    second = _run(
        tiny_bert, csv_file, tmp_path / "b", learning_rate=2e-2
    )  # a second head on the same features
    assert calls == []  # no backbone forward pass at all: every split came from the cache
    assert second.metrics["cached_features"] is True

    monkeypatch.setattr(modeling_bert.BertModel, "forward", original)
    import tl_hf.modalities.text
    from tl_hf.data.load import load_classification_data

    saved = json.loads((tmp_path / "b" / "test_predictions.json").read_text())
    results = json.loads((tmp_path / "b" / "all_results.json").read_text())
    test = load_classification_data(
        second.args.data, tl_hf.modalities.text, second.args.training.seed, None, None
    )["test"]
    clf = pipeline("text-classification", model=str(tmp_path / "b"), device="cpu")
    names = saved["label_names"]
    predicted = [names.index(p["label"]) for p in clf(list(test["text"]))]
    assert (
        predicted == saved["predictions"]
    )  # the folder scores exactly as the cached evaluation did
    accuracy = sum(p == y for p, y in zip(predicted, list(test["label"]))) / len(test)
    assert accuracy == pytest.approx(results["test_accuracy"])


def test_on_the_fly_refused_when_asked_and_skipped_otherwise(tiny_bert, csv_file, tmp_path, capsys):
    with pytest.raises(UserError, match="--strategy frozen"):
        _run(tiny_bert, csv_file, tmp_path / "a", strategy="full", cache_features=True)
    with pytest.raises(UserError, match="on_the_fly"):
        _run(
            tiny_bert,
            csv_file,
            tmp_path / "a",
            augment=["swap"],
            augment_mode="on_the_fly",
            cache_features=True,
        )
    result = _run(
        tiny_bert,
        csv_file,
        tmp_path / "b",
        augment=["swap"],
        augment_mode="on_the_fly",
        num_train_epochs=1,
    )
    assert "features not cached (--augment_mode on_the_fly" in capsys.readouterr().out
    assert "cached_features" not in result.metrics
    assert result.args.strategy.cache_features is False  # run_config.yaml records what ran


def _fixed_shape_check(model, dsd, tmp_path, monkeypatch, expected_reduction):
    import datasets
    from transformers import TrainingArguments

    from tl_hf.strategy import apply_strategy, head_parameter_names
    from tl_hf.training.features import build_feature_cache, feature_collator

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    apply_strategy(model, "frozen")
    training = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        per_device_eval_batch_size=4,
        report_to="none",
    )
    cache = build_feature_cache(
        model, dsd, feature_collator, head_parameter_names(model), training, log=lambda m: None
    )
    assert cache.reduction == expected_reduction
    model.eval()
    with torch.no_grad():
        cached = model(
            **{
                k: v
                for k, v in feature_collator(list(cache.features["test"])).items()
                if k != "labels"
            }
        ).logits
        cache.restore()
        raw = dsd["test"].with_format("torch")
        full = model(
            **{k: v for k, v in feature_collator(list(raw)).items() if k != "labels"}
        ).logits
    assert torch.allclose(cached, full, atol=1e-5), (cached - full).abs().max()


def test_vit_head_reads_first_token(tmp_path, monkeypatch):
    from datasets import Dataset, DatasetDict
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(
        ViTConfig(
            image_size=8,
            patch_size=4,
            num_channels=3,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=3,
        )
    )
    ds = Dataset.from_dict(
        {"pixel_values": torch.randn(8, 3, 8, 8).numpy(), "labels": [i % 3 for i in range(8)]}
    )
    _fixed_shape_check(
        model,
        DatasetDict(train=ds, validation=ds.select(range(3)), test=ds.select(range(3, 8))),
        tmp_path,
        monkeypatch,
        "first_token",
    )


def test_whisper_head_mean_over_time_stores_the_whole_sequence(tmp_path, monkeypatch):
    from datasets import Dataset, DatasetDict
    from transformers import WhisperConfig, WhisperForAudioClassification

    torch.manual_seed(0)
    model = WhisperForAudioClassification(
        WhisperConfig(
            num_mel_bins=8,
            d_model=16,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=32,
            max_source_positions=6,
            classifier_proj_size=8,
            num_labels=3,
        )
    )
    ds = Dataset.from_dict(
        {"input_features": torch.randn(8, 8, 12).numpy(), "labels": [i % 3 for i in range(8)]}
    )
    # the head averages over time: the first position alone cannot reproduce it, so the whole
    # (fixed-length) encoder output is stored
    _fixed_shape_check(
        model,
        DatasetDict(train=ds, validation=ds.select(range(3)), test=ds.select(range(3, 8))),
        tmp_path,
        monkeypatch,
        "full",
    )


def test_truncated_feature_cache_is_rebuilt_not_loaded(tiny_bert, csv_file, tmp_path, monkeypatch):
    """A feature cache cut short (a kill or a full disk while `datasets` wrote it) fails the
    size check of its sidecar: the backbone runs again and the run matches the first one."""
    import glob
    import os

    import datasets
    from transformers.models.bert import modeling_bert

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    calls = []
    original = modeling_bert.BertModel.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertModel, "forward", counting)
    first = _run(tiny_bert, csv_file, tmp_path / "a")
    sidecars = glob.glob(str(tmp_path / "cache" / "**" / "*.tl_hf.json"), recursive=True)
    assert len(sidecars) == 3  # train, validation, test
    arrow = sidecars[0][: -len(".tl_hf.json")] + ".arrow"
    size = json.loads(Path(sidecars[0]).read_text())["bytes"]
    assert os.path.getsize(arrow) == size
    with open(arrow, "r+b") as f:
        f.truncate(size // 2)
    calls.clear()
    second = _run(tiny_bert, csv_file, tmp_path / "b")
    assert calls  # rebuilt: the backbone ran again
    assert os.path.getsize(arrow) == size
    assert second.metrics["eval_loss"] == pytest.approx(first.metrics["eval_loss"], rel=1e-5)
    calls.clear()
    _run(tiny_bert, csv_file, tmp_path / "c")
    assert calls == []  # whole again: read from the cache


def test_cached_features_run_resumes_to_the_same_result(tiny_bert, csv_file, tmp_path):
    """A frozen run on cached features, its folder put back to how a kill after epoch 2 of 3
    leaves it (no finished marker, no last checkpoint), continues with resume=True to the
    same metrics and history."""
    import shutil

    from tl_hf.output.folder import list_checkpoints

    out = tmp_path / "a"
    first = _run(tiny_bert, csv_file, out, early_stopping_patience=0)
    history = json.loads((out / "training_history.json").read_text())
    checkpoints = list_checkpoints(str(out))
    assert len(checkpoints) == 2  # epochs 2 and 3 (save_total_limit 2, no early stopping)
    shutil.rmtree(checkpoints[-1])
    (out / "all_results.json").unlink()
    second = _run(tiny_bert, csv_file, out, early_stopping_patience=0, resume=True)
    assert second.metrics["cached_features"] is True
    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy"):
        assert second.metrics[key] == pytest.approx(first.metrics[key], rel=1e-5), key
    resumed = json.loads((out / "training_history.json").read_text())
    assert [e["step"] for e in resumed["eval"]] == [e["step"] for e in history["eval"]]
    for a, b in zip(history["eval"], resumed["eval"], strict=True):
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-5)
