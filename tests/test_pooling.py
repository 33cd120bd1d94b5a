"""The checkpoint's declared mean pooling, expressed in stock classes (tl_hf.model.pooling)."""

import json
import shutil

import pytest
from conftest import sentiment_rows, write_csv


def _declare(folder, mode="pooling_mode_mean_tokens"):
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({mode: True}))
    return folder


@pytest.fixture
def sentence_bert(tiny_bert, tmp_path):
    return _declare(shutil.copytree(tiny_bert, tmp_path / "sentence_bert"))


def _batch(path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    texts = ["good great film", "the plot was awful and boring, very dull", "fine"]
    return model, tokenizer, tokenizer(texts, padding=True, return_tensors="pt")


def _layer_norm_of_mean(hidden, mask, eps):
    import torch

    mask = mask[..., None].float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.layer_norm(mean, mean.shape[-1:], eps=eps)


def test_appended_block_computes_the_masked_mean(tiny_bert):
    import torch

    from tl_hf.model.pooling import POOLER_SCALE, append_mean_pooling

    model, _, batch = _batch(tiny_bert)
    with torch.no_grad():
        before = model.bert(**batch).last_hidden_state
    expected = _layer_norm_of_mean(before, batch["attention_mask"], model.config.layer_norm_eps)
    layers = model.config.num_hidden_layers
    append_mean_pooling(model)
    assert model.config.num_hidden_layers == layers + 1 == len(model.bert.encoder.layer)
    with torch.no_grad():
        after = model.bert(**batch)
    # every kept position carries the mean of the tokens the mask keeps, padding excluded
    assert torch.allclose(after.last_hidden_state[:, 0], expected, atol=2e-3)
    assert torch.allclose(after.pooler_output, torch.tanh(POOLER_SCALE * expected), atol=2e-3)
    # the padded third text alone gives the same vector: padding does not enter the mean
    with torch.no_grad():
        alone = model.bert(
            **{k: v[2:3, : int(batch["attention_mask"][2].sum())] for k, v in batch.items()}
        )
    assert torch.allclose(alone.pooler_output[0], after.pooler_output[2], atol=2e-3)


def test_pooled_model_saves_as_a_stock_class(tiny_bert, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, pipeline

    from tl_hf.model.pooling import append_mean_pooling

    model, tokenizer, batch = _batch(tiny_bert)
    append_mean_pooling(model)
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-5)
    scores = pipeline("text-classification", model=str(tmp_path / "saved"), top_k=None)(["fine"])[0]
    with torch.no_grad():
        probs = torch.softmax(model(**tokenizer(["fine"], return_tensors="pt")).logits, -1)[0]
    by_label = {s["label"]: s["score"] for s in scores}
    assert by_label[loaded.config.id2label[0]] == pytest.approx(float(probs[0]), abs=1e-5)


def test_resolve_pooling_rules(tiny_bert, sentence_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, DistilBertConfig

    from tl_hf.errors import UserError
    from tl_hf.model.pooling import resolve_pooling

    def fresh(path):
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    # declared mean + a head on frozen features: the mean, said so
    model = fresh(sentence_bert)
    pooling, note = resolve_pooling(model, str(sentence_bert), "auto", True)
    assert pooling == "mean" and "1_Pooling" in note and model.config.num_hidden_layers == 3
    # a strategy that fine-tunes: the stock first token, and the note names --pooling mean
    model = fresh(sentence_bert)
    pooling, note = resolve_pooling(model, str(sentence_bert), "auto", False)
    assert pooling == "first" and "--pooling mean" in note and model.config.num_hidden_layers == 2
    # nothing declared: first token, nothing to say
    assert resolve_pooling(fresh(tiny_bert), str(tiny_bert), "auto", True) == ("first", "")
    # asked for explicitly on any BERT-style model
    assert resolve_pooling(fresh(tiny_bert), str(tiny_bert), "mean", False)[0] == "mean"
    # a declared pooling the stock classes cannot express (max): first token, said why
    maxed = _declare(shutil.copytree(tiny_bert, tmp_path / "max_bert"), "pooling_mode_max_tokens")
    pooling, note = resolve_pooling(fresh(maxed), str(maxed), "auto", True)
    assert pooling == "first" and "max pooling" in note
    # a family without BERT blocks: the stock path, and an explicit request is refused
    config = DistilBertConfig(
        vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=2
    )
    distil = AutoModelForSequenceClassification.from_config(config)
    distil_dir = _declare(tmp_path / "distil")
    pooling, note = resolve_pooling(distil, str(distil_dir), "auto", True)
    assert pooling == "first" and "no BERT-style blocks" in note
    with pytest.raises(UserError, match="--pooling mean: .*DistilBert"):
        resolve_pooling(distil, str(distil_dir), "mean", True)


def test_frozen_run_reads_the_declared_mean(sentence_bert, tmp_path):
    from transformers import pipeline

    from tl_hf import train_text_classifier

    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    test_rows = sentiment_rows(12, seed=2)
    test = write_csv(tmp_path / "test.csv", test_rows)
    out = tmp_path / "run"
    result = train_text_classifier(
        model_name_or_path=str(sentence_bert),
        train_file=train,
        test_file=test,
        output_dir=str(out),
        strategy="frozen",
        num_train_epochs=2,
        use_cpu=True,
    )
    assert result.args.model.pooling == "mean" and result.metrics.get("cached_features")
    assert "pooling: mean" in (out / "run_config.yaml").read_text()
    card = (out / "README.md").read_text()
    assert "masked mean" in card and "BertForSequenceClassification" in card
    # the saved stock model reproduces the run's test predictions through pipeline()
    saved = json.loads((out / "test_predictions.json").read_text())
    classify = pipeline("text-classification", model=str(out))
    label2id = classify.model.config.label2id
    predicted = [label2id[p["label"]] for p in classify([r["sentence"] for r in test_rows])]
    assert predicted == saved["predictions"]
