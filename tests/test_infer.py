"""After training: predict, evaluate and calibration on a real tiny text run (trained here) and
hand-made image and audio run folders (tiny models saved as a run saves them)."""

import csv
import json
import os
import tracemalloc

import numpy as np
import pytest
import yaml
from conftest import NEGATIVE, POSITIVE, make_tiny_bert, sentiment_rows, write_csv

from tl_hf.cli.main import main as cli


def _json(path):
    with open(path) as f:
        return json.load(f)


def _text(path):
    with open(path) as f:
        return f.read()


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mixed_rows(n):
    """Rows with a positive and a negative word each, labelled alternately: the model gets
    some of them wrong, so the metrics compared are not all 1."""
    return [
        {
            "sentence": f"{POSITIVE[i % 5]} {NEGATIVE[(i * 2) % 5]} movie",
            "sentiment": ["pos", "neg"][i % 2],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    from tl_hf.cli.recipe import main

    root = tmp_path_factory.mktemp("text_run")
    rows = sentiment_rows(140, seed=3)
    files = {
        "train": write_csv(root / "train.csv", rows[:80]),
        "validation": write_csv(root / "val.csv", rows[80:110]),
        "test": write_csv(root / "test.csv", rows[110:] + mixed_rows(10)),
    }
    out = str(root / "run")
    argv = [
        "--model_name_or_path",
        make_tiny_bert(root / "bert"),
        "--train_file",
        files["train"],
        "--validation_file",
        files["validation"],
        "--test_file",
        files["test"],
        "--output_dir",
        out,
        "--num_train_epochs",
        "6",
        "--strategy",
        "full",
        "--learning_rate",
        "3e-3",
        "--use_cpu",
    ]
    assert main("text", argv) == 0
    return out, files, rows


def test_evaluate_equals_the_runs_own_test_metrics(text_run, capsys):
    out, files, _ = text_run
    assert cli(["evaluate", out, "--input", files["test"]]) == 0
    results = _json(os.path.join(out, "all_results.json"))
    metrics = _json(os.path.join(out, "eval_test", "metrics.json"))
    assert metrics["samples"] == results["test_samples"] == 40
    assert 0.5 < results["test_accuracy"] < 1  # mixed rows: some errors to agree on
    assert metrics["accuracy"] == results["test_accuracy"]
    assert metrics["f1"] == results["test_f1"]
    assert abs(metrics["loss"] - results["test_loss"]) < 1e-5
    assert metrics["per_class"] == results["test_per_class"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 40
    page = _text(os.path.join(out, "eval_test", "report.html"))
    assert "Confusion matrix" in page and "Per class" in page
    manifest = _json(os.path.join(out, ".tl_hf_manifest.json"))
    assert "eval_test" in manifest["claimed"]  # tl-hf's own entry from now on


def test_evaluate_counts_unknown_labels_apart(text_run, tmp_path, capsys):
    out, _, rows = text_run
    extra = [{"sentence": "the plot was", "sentiment": "meh"}] * 3
    data = write_csv(tmp_path / "new.csv", rows[110:] + extra)
    assert cli(["evaluate", out, "--input", data, "--name", "month2"]) == 0
    metrics = _json(os.path.join(out, "eval_month2", "metrics.json"))
    assert metrics["unknown_labels"] == {"meh": 3}
    assert metrics["samples"] == 30
    assert "3 rows with labels the model never saw" in capsys.readouterr().out


def test_predict_csv_matches_the_model_and_temperature(text_run, tmp_path, capsys):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, files, rows = text_run
    target = str(tmp_path / "p.csv")
    assert cli(["predict", out, "--input", files["test"], "--output", target, "--top_k", "2"]) == 0
    got = _read(target)
    assert len(got) == 40 and list(got[0]) == [
        "row",
        "input",
        "label",
        "probability",
        "label_2",
        "probability_2",
    ]
    calibration = _json(os.path.join(out, "calibration.json"))
    temperature = calibration["temperature"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = [r["sentence"] for r in _read(files["test"])]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    probs = (logits / temperature).softmax(-1)
    for row, p in zip(got, probs, strict=True):
        assert row["input"] == texts[int(row["row"])]
        assert row["label"] == model.config.id2label[int(p.argmax())]
        assert abs(float(row["probability"]) - float(p.max())) < 1e-5
        assert abs(float(row["probability"]) + float(row["probability_2"]) - 1) < 1e-5
    # --no_calibration: the raw softmax
    raw = str(tmp_path / "raw.csv")
    assert cli(["predict", out, "--input", files["test"], "--output", raw, "--no_calibration"]) == 0
    first = float(_read(raw)[0]["probability"])
    assert abs(first - float(logits.softmax(-1)[0].max())) < 1e-5


def test_predict_reads_every_input_kind_alike(text_run, tmp_path):
    from datasets import Dataset

    out, _, rows = text_run
    rows = rows[110:120]
    inputs = {"csv": write_csv(tmp_path / "in.csv", rows)}
    with open(tmp_path / "in.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    inputs["jsonl"] = str(tmp_path / "in.jsonl")
    (tmp_path / "in.json").write_text(json.dumps(rows))
    inputs["json"] = str(tmp_path / "in.json")
    Dataset.from_list(rows).to_parquet(str(tmp_path / "in.parquet"))
    inputs["parquet"] = str(tmp_path / "in.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "disk"))
    inputs["disk"] = str(tmp_path / "disk")
    seen = {}
    for kind, path in inputs.items():
        target = str(tmp_path / f"{kind}.csv")
        assert cli(["predict", out, "--input", path, "--output", target, "--batch_size", "3"]) == 0
        seen[kind] = [(r["input"], r["label"], r["probability"]) for r in _read(target)]
    assert all(v == seen["csv"] for v in seen.values()) and len(seen["csv"]) == 10


def test_predict_bad_rows_exit_2_before_output_or_are_skipped(text_run, tmp_path, capsys):
    out, _, rows = text_run
    data = write_csv(tmp_path / "bad.csv", rows[:5] + [{"sentence": "", "sentiment": "pos"}])
    target = str(tmp_path / "p.csv")
    assert cli(["predict", out, "--input", data, "--output", target]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: row 5 of") and "--skip_bad_files" in err
    assert not os.path.exists(target) and os.listdir(tmp_path) == ["bad.csv"]
    assert cli(["predict", out, "--input", data, "--output", target, "--skip_bad_files"]) == 0
    assert [r["row"] for r in _read(target)] == ["0", "1", "2", "3", "4"]
    assert "skipped 1 unreadable rows: row 5 (empty or missing)" in capsys.readouterr().out
    # a file tl-hf did not write is never overwritten; its own is
    assert cli(["predict", out, "--input", data, "--output", target, "--skip_bad_files"]) == 0
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    assert cli(["predict", out, "--input", data, "--output", str(mine)]) == 2
    assert mine.read_text() == "a,b\n1,2\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"sentence\n" + b"good movie\n" * 300 + b"caf\xe9 film\n")
    for argv, message in [
        (["--input", str(tmp_path / "none.csv")], "does not exist"),
        (["--input", data, "--batch_size", "0"], "--batch_size 0"),
        (["--input", str(tmp_path)], "reads data files only"),
        (["--input", str(latin)], "is not UTF-8 text"),
    ]:
        capsys.readouterr()
        assert cli(["predict", out, *argv, "--output", str(tmp_path / "x.csv")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    capsys.readouterr()
    assert cli(["predict", str(tmp_path), "--input", data]) == 2
    assert "holds no finished run" in capsys.readouterr().err


def test_calibration_in_the_card_and_report(text_run):
    from tl_hf.training.metrics import TEMPERATURE_RANGE

    out, _, _ = text_run
    record = _json(os.path.join(out, "calibration.json"))
    results = _json(os.path.join(out, "all_results.json"))
    fitted = results["eval_temperature"]  # a split the model separates keeps T = 1
    assert record["temperature"] == (fitted if fitted > TEMPERATURE_RANGE[0] else 1.0)
    assert record["test"]["ece"] == results["test_ece"]
    assert "test_temperature" not in results  # the test split never chooses T
    assert "temperature scaling (T = " in _text(os.path.join(out, "README.md"))
    assert "<h2>Calibration</h2>" in _text(os.path.join(out, "report.html"))


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    from tl_hf.infer.calibrate import calibration_record
    from tl_hf.training.metrics import (
        expected_calibration_error,
        fit_temperature,
        softmax,
    )

    rng = np.random.default_rng(0)

    def overconfident(n):  # labels drawn from softmax(z): z is calibrated, 4 z is not
        z = rng.normal(0, 1.5, (n, 4))
        labels = np.array([rng.choice(4, p=p) for p in softmax(z)])
        return 4 * z, labels

    val_logits, val_labels = overconfident(2000)
    test_logits, test_labels = overconfident(2000)
    temperature = fit_temperature(val_logits, np.eye(4)[val_labels])
    assert 3 < temperature < 5
    before = expected_calibration_error(softmax(test_logits), test_labels)
    after = expected_calibration_error(softmax(test_logits, temperature), test_labels)
    assert before > 0.15 and after < 0.04, (before, after)
    metrics = {"eval_temperature": temperature, "test_temperature": 0.5, "test_ece": 1.0}
    record = calibration_record(metrics, test_logits, test_labels)
    assert record["test"] == {"ece": before, "ece_calibrated": after}
    assert metrics["test_ece"] == before and "test_temperature" not in metrics


def test_a_perfectly_separated_validation_split_keeps_the_raw_softmax():
    from tl_hf.infer.calibrate import calibration_record
    from tl_hf.training.metrics import TEMPERATURE_RANGE, fit_temperature

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(0, 0.3, (300, 3)) + 10 * np.eye(3)[labels]  # always right
    fitted = fit_temperature(logits, np.eye(3)[labels])
    assert fitted == TEMPERATURE_RANGE[0]  # the loss keeps falling as T falls
    metrics = {"eval_temperature": fitted, "eval_ece": 0.1, "eval_scaled_ece": 0.0}
    wrong = np.array([[3.0, 0.0, 0.0]])  # a confident mistake on new data
    record = calibration_record(metrics, wrong, [1])
    assert record["temperature"] == 1.0 and "not identifiable" in record["fitted_on"]
    assert record["validation"]["ece_calibrated"] == 0.1
    assert record["test"]["ece_calibrated"] == record["test"]["ece"]


def test_batches_keep_memory_flat_in_the_input_size(tmp_path):
    from tl_hf.infer.inputs import iter_batches, open_input
    from tl_hf.infer.loaded import run_settings

    modality, settings = run_settings({"modality": "text"})
    peaks = {}
    for n in (2_000, 40_000):
        path = tmp_path / f"{n}.csv"
        with open(path, "w") as f:
            f.write(
                "text\n"
                + "".join(f"row number {i} of the file with some words\n" for i in range(n))
            )
        source = open_input(str(path), modality, settings)
        tracemalloc.start()
        count = sum(len(b["text"]) for _, b in iter_batches(source, 64))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n
    assert peaks[40_000] < 1.5 * peaks[2_000] + 200_000, peaks


def _media_run(root, modality, model, processor, names):
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.save_pretrained(root)
    processor.save_pretrained(root)
    (root / "all_results.json").write_text("{}")
    (root / "run_config.yaml").write_text(yaml.safe_dump({"modality": modality}))
    return str(root)


def test_predict_an_image_folder_with_a_corrupt_file(tmp_path, capsys):
    from test_recipe_image import make_image_folder, make_tiny_resnet
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = make_tiny_resnet(tmp_path / "resnet")
    run = _media_run(
        tmp_path / "run",
        "image",
        AutoModelForImageClassification.from_pretrained(path, num_labels=2),
        AutoImageProcessor.from_pretrained(path),
        ["left", "right"],
    )
    folder = make_image_folder(tmp_path / "images", per_class=3)
    assert cli(["evaluate", run, "--input", folder]) == 0
    metrics = _json(os.path.join(run, "eval_images", "metrics.json"))
    assert metrics["samples"] == 6
    (tmp_path / "images" / "left" / "broken.png").write_bytes(b"not a png")
    target = str(tmp_path / "p.csv")
    capsys.readouterr()
    assert cli(["predict", run, "--input", folder, "--output", target]) == 2
    assert "broken.png" in capsys.readouterr().err and not os.path.exists(target)
    assert cli(["predict", run, "--input", folder, "--output", target, "--skip_bad_files"]) == 0
    got = _read(target)
    assert len(got) == 6 and all(r["label"] in ("left", "right") for r in got)
    assert not any("broken" in r["input"] for r in got)


def test_predict_audio_files_listed_in_a_csv(tmp_path):
    import soundfile as sf
    from conftest import tiny_wav2vec2_config
    from test_recipe_audio import tone
    from transformers import (
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    config = tiny_wav2vec2_config(
        num_hidden_layers=1,
        num_labels=2,
    )
    run = _media_run(
        tmp_path / "run",
        "audio",
        Wav2Vec2ForSequenceClassification(config),
        Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True),
        ["low", "high"],
    )
    (tmp_path / "clips").mkdir()
    for i, freq in enumerate((220, 880, 440)):
        sf.write(tmp_path / "clips" / f"{i}.wav", tone(freq, seconds=0.3 + 0.1 * i), 16000)
    data = write_csv(tmp_path / "clips.csv", [{"audio": f"clips/{i}.wav"} for i in range(3)])
    target = str(tmp_path / "p.csv")
    assert cli(["predict", run, "--input", data, "--output", target, "--batch_size", "2"]) == 0
    got = _read(target)
    assert [r["input"] for r in got] == [str(tmp_path / "clips" / f"{i}.wav") for i in range(3)]
    assert all(0.5 <= float(r["probability"]) <= 1 for r in got)
