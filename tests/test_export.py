"""tl-hf export --onnx on tiny models of each modality's default architecture (BERT as the
text default MiniLM, timm EfficientNet through TimmWrapper, Whisper's encoder classifier):
onnxruntime's probabilities equal PyTorch's within 1e-4, same labels, and the folder runs on
its own (processor files, config.json, calibration.json beside the model)."""

import json

import numpy as np
import pytest
import yaml
from run_folder import tiny_text_model

from tl_hf.cli.main import main as cli


def _run_folder(root, modality, model, processor, extra=None):
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    (root / "all_results.json").write_text("{}")
    (root / "run_config.yaml").write_text(yaml.safe_dump({"modality": modality, **(extra or {})}))
    (root / "calibration.json").write_text(json.dumps({"temperature": 1.5}))
    manifest = {"tl_hf": "", "version": 1, "kind": "run", "claimed": [], "other": []}
    (root / ".tl_hf_manifest.json").write_text(json.dumps(manifest))  # as a run writes it
    return root


def _session(folder):
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def test_text_export_runs_on_its_own(tmp_path, capsys):
    import torch
    from transformers import AutoConfig, AutoTokenizer

    model, tokenizer = tiny_text_model()
    torch.nn.init.normal_(model.classifier.weight, std=2.0)  # probabilities far from uniform
    root = _run_folder(tmp_path / "run", "text", model, tokenizer)
    data = tmp_path / "check.csv"
    data.write_text("text\ngood movie\nthe plot was awful\nokay okay okay the movie was fine\n")
    assert cli(["export", str(root), "--onnx", "--input", str(data)]) == 0
    out = root / "onnx"
    record = json.loads((out / "export.json").read_text())
    assert record["examples"] == 3 and record["max_probability_difference"] < 1e-4
    assert {"model.onnx", "config.json", "tokenizer.json", "calibration.json"} <= {
        p.name for p in out.iterdir()
    }
    # the folder alone: its tokenizer, its config's labels, onnxruntime
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = AutoConfig.from_pretrained(out)
    texts = ["good great movie", "bad", "the plot was awful and the movie dull"]
    feeds = dict(tokenizer(texts, padding=True, return_tensors="np"))
    session = _session(out)
    logits = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    model.eval()
    with torch.no_grad():
        reference = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert np.abs(logits - reference.numpy()).max() < 1e-4
    assert [config.id2label[int(i)] for i in logits.argmax(-1)] == [
        model.config.id2label[int(i)] for i in reference.argmax(-1)
    ]
    assert "onnx" in json.loads((root / ".tl_hf_manifest.json").read_text())["claimed"]
    # again: tl-hf's own folder is replaced; a user's folder is refused
    assert cli(["export", str(root), "--onnx"]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert cli(["export", str(root), "--onnx", "--output", str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "mine"


def test_image_export_timm_efficientnet(tmp_path):
    from transformers import (
        TimmWrapperConfig,
        TimmWrapperForImageClassification,
        TimmWrapperImageProcessor,
    )

    pretrained = {
        "input_size": [3, 64, 64],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "num_classes": 2,
    }
    config = TimmWrapperConfig(
        architecture="test_efficientnet", num_labels=2, pretrained_cfg=pretrained
    )
    model = TimmWrapperForImageClassification(config)
    processor = TimmWrapperImageProcessor(
        pretrained_cfg=pretrained, architecture="test_efficientnet"
    )
    root = _run_folder(tmp_path / "run", "image", model, processor)
    assert cli(["export", str(root), "--onnx"]) == 0
    record = json.loads((root / "onnx" / "export.json").read_text())
    assert record["model_class"] == "TimmWrapperForImageClassification"
    assert record["examples"] == 5 and record["max_probability_difference"] < 1e-4


def test_audio_export_whisper_classifier(tmp_path):
    from conftest import tiny_whisper_config
    from transformers import WhisperFeatureExtractor, WhisperForAudioClassification

    config = tiny_whisper_config(
        max_source_positions=50,
        classifier_proj_size=8,
        num_labels=3,
    )
    model = WhisperForAudioClassification(config)
    extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=1)
    root = _run_folder(tmp_path / "run", "audio", model, extractor, {"max_duration_seconds": 1.0})
    assert cli(["export", str(root), "--onnx"]) == 0
    record = json.loads((root / "onnx" / "export.json").read_text())
    assert record["model_class"] == "WhisperForAudioClassification"
    assert record["max_probability_difference"] < 1e-4
    assert (root / "onnx" / "preprocessor_config.json").is_file()


@pytest.mark.parametrize("argv", [["--onnx"], []])
def test_export_refuses_what_is_no_finished_run(tmp_path, capsys, argv):
    code = cli(["export", str(tmp_path), *argv]) if argv else None
    if argv:
        assert code == 2 and "holds no finished run" in capsys.readouterr().err
    else:
        with pytest.raises(SystemExit):
            cli(["export", str(tmp_path)])
