"""The audio recipe end to end on tiny local models and an audio folder: launch through
accelerate, pipeline() on the output, resampling/downmixing, file checks, Whisper's window."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from tl_hf.cli.recipe import main

LAUNCH = [
    os.path.join(os.path.dirname(sys.executable), "accelerate"),
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


def tone(freq, seconds=0.5, rate=16000, channels=1, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(
        len(t)
    )
    return (
        np.stack([wave] * channels, axis=1).astype(np.float32)
        if channels > 1
        else wave.astype(np.float32)
    )


def make_audio_folder(root, per_class=10):
    """Low vs high tones, some stereo at 44.1 kHz, some mono at 16 kHz."""
    import soundfile as sf

    for label, freq in (("low", 300.0), ("high", 2500.0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rate, channels = (44100, 2) if i % 3 == 0 else (16000, 1)
            sf.write(
                root / label / f"{i}.wav",
                tone(freq * (1 + 0.02 * i), 0.4 + 0.05 * (i % 4), rate, channels, i),
                rate,
            )
    return str(root)


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory):
    return make_audio_folder(tmp_path_factory.mktemp("audio") / "clips")


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from conftest import tiny_wav2vec2_config
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    path = tmp_path_factory.mktemp("w2v")
    config = tiny_wav2vec2_config()
    Wav2Vec2ForSequenceClassification(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        sampling_rate=16000, do_normalize=True, return_attention_mask=True
    ).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    from conftest import tiny_whisper_config
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    path = tmp_path_factory.mktemp("whisper")
    config = tiny_whisper_config(
        max_source_positions=1500,
        max_target_positions=32,
        classifier_proj_size=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperForConditionalGeneration(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return str(path)


def test_accelerate_launch_audio_recipe(tiny_wav2vec2, audio_folder, tmp_path):
    from transformers import pipeline

    out = tmp_path / "out"
    cmd = [
        *LAUNCH,
        os.path.join(REPO, "recipes", "audio_classify.py"),
        "--model_name_or_path",
        tiny_wav2vec2,
        "--dataset_name",
        audio_folder,
        "--output_dir",
        str(out),
        "--strategy",
        "llrd",
        "--learning_rate",
        "1e-2",
        "--num_train_epochs",
        "6",
        "--per_device_train_batch_size",
        "4",
        "--validation_split_percentage",
        "20",
        "--max_duration_seconds",
        "0.5",
        "--augment",
        "gain",
        "noise:p=1.0",
        "--augment_copies",
        "1",
        "--augment_preview",
        "2",
        "--use_cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_samples"] == 16 * 2 and results["eval_samples"] == 4
    previews = sorted(p.name for p in (out / "augment_preview").iterdir())
    assert (
        any(p.endswith(".png") for p in previews) and sum(p.endswith(".wav") for p in previews) >= 4
    ), previews
    groups = json.loads((out / "param_groups.json").read_text())
    # the conv feature encoder is frozen by default: exactly its parameters are in no group
    from transformers import AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(out)
    total = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.wav2vec2.feature_extractor.parameters())
    assert sum(g["num_params"] for g in groups) == total - encoder
    classify = pipeline("audio-classification", model=str(out))
    prediction = classify(tone(2500.0, 0.5))
    assert prediction[0]["label"] in ("low", "high")


def _train_whisper(model, folder, out, **flags):
    """One epoch of the tiny Whisper on the tone folder."""
    import tl_hf

    return tl_hf.train_audio_classifier(
        model_name_or_path=model,
        dataset_name=folder,
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        validation_split_percentage=20,
        **flags,
    )


def test_whisper_window_shrinks_and_reloads(tiny_whisper, audio_folder, tmp_path):
    from transformers import AutoConfig, AutoFeatureExtractor, pipeline

    out = tmp_path / "wh"
    result = _train_whisper(
        tiny_whisper, audio_folder, out, max_duration_seconds=1.0, augment=["specaugment", "mixup"]
    )
    assert result.model.config.max_source_positions == 50  # 1 s = 100 mel frames = 50 positions
    assert AutoConfig.from_pretrained(out).max_source_positions == 50
    assert AutoFeatureExtractor.from_pretrained(out).nb_max_frames == 100
    # the sinusoidal positions stay fixed under any strategy
    assert not result.model.encoder.embed_positions.weight.requires_grad
    assert pipeline("audio-classification", model=str(out))(tone(300.0, 0.7))[0]["label"] in (
        "low",
        "high",
    )


def test_bad_audio_files(tiny_wav2vec2, tmp_path, capsys):
    import soundfile as sf

    folder = tmp_path / "bad"
    make_audio_folder(folder, per_class=6)
    (folder / "low" / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(folder / "high" / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    base = [
        "--model_name_or_path",
        tiny_wav2vec2,
        "--dataset_name",
        str(folder),
        "--num_train_epochs",
        "1",
        "--validation_split_percentage",
        "25",
        "--use_cpu",
        "--max_duration_seconds",
        "0.5",
    ]
    code = main("audio", [*base, "--output_dir", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "2 unreadable audio file(s) in the train split" in err
    assert "corrupt.wav" in err and "empty.wav: zero-length clip" in err
    code = main("audio", [*base, "--output_dir", str(tmp_path / "b"), "--skip_bad_files"])
    assert code == 0 and "skipped 2 unreadable audio file(s)" in capsys.readouterr().out
    code = main("audio", [*base, "--output_dir", str(tmp_path / "c"), "--audio_column", "wave"])
    assert (
        code == 2
        and "audio column 'wave' not found; columns are: audio, label" in capsys.readouterr().err
    )


def test_in_memory_arrays_resampled(tiny_wav2vec2, tmp_path):
    """Arrays at 8 kHz, in memory: decoded and resampled to the extractor's 16 kHz."""
    from datasets import Dataset

    import tl_hf
    from tl_hf.modalities.audio import Preprocess

    rows = [
        {"audio": {"array": tone(f, 0.5, 8000), "sampling_rate": 8000}, "label": name}
        for name, f in (("low", 300.0), ("high", 2500.0))
        for _ in range(6)
    ]
    result = tl_hf.train_audio_classifier(
        Dataset.from_list(rows),
        model_name_or_path=tiny_wav2vec2,
        output_dir=str(tmp_path / "m"),
        num_train_epochs=1,
        use_cpu=True,
        validation_split_percentage=50,
        max_duration_seconds=0.5,
    )
    assert result.metrics["train_samples"] == 6
    from transformers import AutoFeatureExtractor

    fe = AutoFeatureExtractor.from_pretrained(tiny_wav2vec2)
    batch = Preprocess(fe, 0.5, train_split=False)(
        {"audio": [{"array": tone(300.0, 1.0, 8000), "sampling_rate": 8000}], "label": [0]}
    )
    assert (
        np.asarray(batch["input_values"]).shape[-1] == 8000
    )  # 0.5 s at 16 kHz: resampled, centre-cropped


def test_audio_corrupted_mid_training_is_skipped(tiny_wav2vec2, tmp_path, capsys, monkeypatch):
    """A clip that decoded in epoch 1 is text in epoch 2: with --skip_bad_files it is dropped
    from its batches, named and counted once, and the run finishes."""
    from test_recipe_image import _corrupt_after_first_epoch

    folder = make_audio_folder(tmp_path / "clips", per_class=6)
    _corrupt_after_first_epoch(monkeypatch, tmp_path / "clips" / "low" / "2.wav")
    code = main(
        "audio",
        [
            "--model_name_or_path",
            tiny_wav2vec2,
            "--dataset_name",
            folder,
            "--output_dir",
            str(tmp_path / "out"),
            "--num_train_epochs",
            "2",
            "--validation_split_percentage",
            "25",
            "--max_duration_seconds",
            "0.5",
            "--use_cpu",
            "--skip_bad_files",
        ],
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("[tl-hf] skipped 2.wav: no longer decodes") == 1
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert results["stopped_epoch"] == 2


def _clips(seconds):
    """An in-memory audio split of silent-ish clips lasting `seconds` each, stored as wav bytes
    (so the rule reads headers) ."""
    import io

    import soundfile as sf
    from datasets import Audio, Dataset

    rows = []
    for i, length in enumerate(seconds):
        buffer = io.BytesIO()
        sf.write(buffer, tone(300.0, length, 16000, 1, i), 16000, format="WAV")
        rows.append({"bytes": buffer.getvalue(), "path": None})
    data = Dataset.from_dict({"audio": rows, "label": [i % 2 for i in range(len(rows))]})
    return data.cast_column("audio", Audio(sampling_rate=16000))


@pytest.mark.parametrize(
    "seconds, given, model_type, window",
    [
        ([2.2] * 39 + [20.0], None, "whisper", 3.0),  # the one long clip is cropped
        ([2.2] * 18 + [20.0] * 2, None, "whisper", 20.0),  # 10% long: they set the window
        ([0.3] * 10, None, "whisper", 1.0),  # at least one second
        ([31.0] * 4, None, "whisper", None),  # clips as long as the window: nothing to shrink
        ([2.2] * 10, 1.5, "whisper", None),  # --max_duration_seconds given
        ([2.2] * 10, None, "wav2vec2", None),  # no fixed window: batches pad to their longest
    ],
)
def test_whisper_window_from_the_data(seconds, given, model_type, window):
    from argparse import Namespace

    from transformers import WhisperFeatureExtractor

    from tl_hf.modalities.audio import rules_from_data

    data_args = Namespace(max_duration_seconds=given)
    rules = rules_from_data(
        _clips(seconds), WhisperFeatureExtractor(), data_args, Namespace(model_type=model_type)
    )
    assert [rule.settings for rule in rules] == (
        [{"max_duration_seconds": window}] if window else []
    )
    if window:
        assert f"shrinks to {window:.0f} s" in rules[0].line


def test_whisper_without_a_duration_takes_its_window_from_the_clips(
    tiny_whisper, audio_folder, tmp_path, capsys
):
    """The folder's clips last 0.4-0.55 s: the recipe, given no --max_duration_seconds, trains
    on a 1 s window (not 30 s), says so, and records it in run_config.yaml and the card."""
    import yaml

    out = tmp_path / "wh"
    result = _train_whisper(tiny_whisper, audio_folder, out)
    assert result.model.config.max_source_positions == 50
    line = "--max_duration_seconds 1.0 from the data"
    assert line in capsys.readouterr().out
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["max_duration_seconds"] == 1.0
    assert any(rule.startswith(line) for rule in config["rules_from_data"])
    assert line in (out / "README.md").read_text()


def test_selection_ranks_whisper_candidates_on_the_window_from_the_data(
    tiny_whisper, audio_folder, tmp_path, capsys
):
    """`tl-hf select audio` takes the same window as a run would (it padded every clip to 30 s):
    each Whisper candidate says which, and ranks on it."""
    import shutil

    import tl_hf

    other = tmp_path / "whisper_copy"
    shutil.copytree(tiny_whisper, other)
    selection = tl_hf.select_checkpoint(
        "audio",
        [tiny_whisper, str(other)],
        dataset_name=audio_folder,
        validation_split_percentage=25,
        test_split_percentage=0,
    )
    assert len(selection.scores) == 2
    lines = [
        line
        for line in capsys.readouterr().out.splitlines()
        if "--max_duration_seconds 1.0 from the data" in line
    ]
    assert len(lines) == 2, lines  # one per candidate
