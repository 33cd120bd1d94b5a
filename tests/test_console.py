"""The quiet console: one progress bar per phase, one line per evaluation, the load report
condensed to one line when it only says the new head was initialised; --verbose shows all."""

from __future__ import annotations

import re

import pytest

from tl_hf.config import ModelArguments


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A headless BERT (the classifier head is new) and a BERT with a masked-LM head (its
    weights are unexpected in a classifier)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    root = tmp_path_factory.mktemp("checkpoints")
    config = BertConfig(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=True).save_pretrained(root / "headless")
    BertForMaskedLM(config).save_pretrained(root / "mlm")
    return root


@pytest.fixture
def transformers_log():
    """What transformers logs during a test (its own handler writes to the stream pytest
    had when transformers was imported, which capfd does not see)."""
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def build(path, verbose=False):
    from tl_hf.model.checkpoint import build_model

    return build_model(
        "AutoModelForSequenceClassification",
        str(path),
        ModelArguments(),
        ["a", "b", "c"],
        verbose=verbose,
    )


def test_load_report_condensed_to_one_line_when_only_the_head_is_new(
    checkpoints, capfd, transformers_log
):
    capfd.readouterr()
    build(checkpoints / "headless")
    out, err = capfd.readouterr()
    err += transformers_log.getvalue()
    lines = [line for line in (out + err).splitlines() if "headless" in line]
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err
    assert lines == [
        "[tl-hf] loaded BertForSequenceClassification from headless: new head initialised "
        "(2 tensors: classifier.bias, classifier.weight; --verbose shows the full load report)"
    ]


def test_verbose_keeps_the_full_load_report(checkpoints, capfd, transformers_log):
    capfd.readouterr()
    build(checkpoints / "headless", verbose=True)
    out, err = capfd.readouterr()
    err += transformers_log.getvalue()
    assert "LOAD REPORT" in err and "classifier.weight | MISSING" in err
    assert "new head initialised" not in out


def test_unexpected_weights_show_the_full_report(checkpoints, capfd, transformers_log):
    capfd.readouterr()
    build(checkpoints / "mlm")
    out, err = capfd.readouterr()
    err += transformers_log.getvalue()
    assert "LOAD REPORT" in err and "UNEXPECTED" in err
    assert "new head initialised" not in out


def test_an_unused_whisper_decoder_keeps_the_report_to_one_line(tmp_path, capfd, transformers_log):
    """Whisper checkpoints (the embedded tiny.en, the ladder's base) carry a decoder that the
    audio classifier does not have: not a surprise worth the whole report."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from tl_hf.model.checkpoint import build_model

    config = WhisperConfig(
        vocab_size=60, d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, num_mel_bins=8,
        max_source_positions=16, max_target_positions=8, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    WhisperForConditionalGeneration(config).save_pretrained(tmp_path / "whisper")
    capfd.readouterr()
    build_model(
        "AutoModelForAudioClassification", str(tmp_path / "whisper"), ModelArguments(), ["a", "b"]
    )
    out, err = capfd.readouterr()
    err += transformers_log.getvalue()
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err
    (line,) = [line for line in out.splitlines() if "whisper" in line]
    assert re.search(
        r"new head initialised \(4 tensors: .*; its decoder \(\d+ tensors\) is not used", line
    )


def _bars(text: str) -> set[str]:
    return set(re.findall(r"(?:^|\r|\n)(\w+):\s+\d+%\|", text))


def test_one_bar_per_phase_and_one_line_per_evaluation(tiny_bert, sentiment_csv, tmp_path, capfd):
    import tl_hf

    def run(name, **extra):
        capfd.readouterr()
        tl_hf.train_text_classifier(
            model_name_or_path=tiny_bert,
            train_file=sentiment_csv,
            output_dir=str(tmp_path / name),
            num_train_epochs=2,
            logging_steps=1,
            strategy="frozen",
            test_split_percentage=20,
            use_cpu=True,
            **extra,
        )
        out, err = capfd.readouterr()
        return out + err

    quiet = run("quiet")
    assert _bars(quiet) == {"data", "features", "training", "evaluation"}
    lines = re.findall(r"\[tl-hf\] epoch \d+ validation: loss .*", quiet)
    assert len(lines) == 2
    # the selection metric on the line; the calibration figures only in the files
    assert all("scaled_loss" in line and "temperature" not in line for line in lines)
    for noise in ("Writing model shards", "Loading weights", "{'loss'", "Caching backbone"):
        assert noise not in quiet, noise
    loud = run("loud", verbose=True)
    for noise in ("Writing model shards", "Loading weights", "{'loss'"):
        assert noise in loud, noise
    assert "[tl-hf] epoch 1 validation" not in loud
