"""The embedded audio defaults: Whisper tiny.en converted from CTranslate2 transcribes
speech; the synthesized spoken-words dataset holds out its test voices."""

from __future__ import annotations

import difflib
import re

import numpy as np
import pytest

from tl_hf.embedded import audio as ea

SENTENCE = "the quick brown fox jumps over the lazy dog"


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def _transcribe(folder: str, wave) -> str:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(folder)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    features = processor(wave, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=40)
    return processor.batch_decode(ids, skip_special_tokens=True)[0]


@pytest.mark.slow
def test_converted_whisper_transcribes(tmp_path):
    folder = ea.whisper_tiny_en_folder(str(tmp_path))
    assert ea.whisper_tiny_en_folder(str(tmp_path)) == folder  # reused, not reconverted
    # synthesized speech: at most one word off (TTS "jumps" is often heard as "jump")
    for voice in ("flite:slt", "espeak:en-gb+f2"):
        heard = _words(_transcribe(folder, ea.synthesize_speech(SENTENCE, voice)))
        ratio = difflib.SequenceMatcher(a=_words(SENTENCE), b=heard).ratio()
        assert ratio >= 0.88, (voice, heard)
    # a real recording (pytest-audioeval): exact after normalisation
    from importlib.util import find_spec
    from pathlib import Path

    import soundfile as sf
    import soxr

    # a namespace package: no __init__.py, so no origin
    package = Path(next(iter(find_spec("pytest_audioeval").submodule_search_locations)))
    clip = package / "samples/audio/en/quick_brown_fox.wav"
    wave, rate = sf.read(clip, dtype="float32", always_2d=True)
    assert _words(_transcribe(folder, soxr.resample(wave.mean(1), rate, 16000))) == _words(SENTENCE)
    # the classifier loads every encoder weight; only projector and classifier are new
    from transformers import WhisperForAudioClassification

    model, info = WhisperForAudioClassification.from_pretrained(
        folder, num_labels=10, output_loading_info=True
    )
    assert sorted(info["missing_keys"]) == [
        "classifier.bias",
        "classifier.weight",
        "projector.bias",
        "projector.weight",
    ]
    assert not info["mismatched_keys"]


def test_ctranslate2_mapping_fails_loudly_on_unknown_variables():
    from tl_hf.errors import UserError

    variables = {
        "encoder/conv1/weight": np.zeros((2, 2, 3), np.float32),
        "encoder/surprise": np.zeros(1),
    }
    with pytest.raises(UserError):
        ea._ct2_to_hf_state_dict(variables, (0, 0))


def test_voice_split_holds_out_speakers():
    voices = ea.spoken_word_voices()
    splits = {
        s: {v for v in voices if ea.voice_split(v) == s} for s in ("train", "validation", "test")
    }
    assert all(splits.values())
    assert not (splits["test"] & (splits["train"] | splits["validation"]))
    speaker = lambda v: v.rpartition("+")[2] if "+" in v else v  # noqa: E731
    assert not {speaker(v) for v in splits["test"]} & {speaker(v) for v in splits["train"]}


def test_spoken_words_small(tmp_path, monkeypatch):
    import soundfile as sf

    # a small plan: 2 espeak accents x 12 variants + 5 flite voices, 1 rendition each
    monkeypatch.setattr(ea, "ESPEAK_ACCENTS", ["en-us", "en-gb"])
    monkeypatch.setattr(ea, "RENDITIONS_ESPEAK", 1)
    monkeypatch.setattr(ea, "RENDITIONS_FLITE", 1)
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    ds = ea.synthesize_spoken_words(str(tmp_path / "words"), words=words)
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].features["label"].names == words
    assert len(ds["train"]) + len(ds["validation"]) + len(ds["test"]) == 10 * (2 * 12 + 5)
    for split in ds.values():  # every word in every split
        assert set(split["label"]) == set(range(10))
    test_voices = set(ds["test"]["voice"])
    assert test_voices and not test_voices & (
        set(ds["train"]["voice"]) | set(ds["validation"]["voice"])
    )
    sample = ds["test"][0]["audio"]
    assert (
        sample["sampling_rate"] == 16000
        and sample["array"].ndim == 1
        and len(sample["array"]) > 1600
    )
    path = ds["train"].cast_column("audio", __import__("datasets").Audio(decode=False))[0]["audio"][
        "path"
    ]
    info = sf.info(path)
    assert (info.samplerate, info.channels) == (16000, 1)
    # a second call reuses the files
    mtime = (tmp_path / "words" / "manifest.json").stat().st_mtime
    ea.synthesize_spoken_words(str(tmp_path / "words"), words=words)
    assert (tmp_path / "words" / "manifest.json").stat().st_mtime == mtime
