"""Choosing the checkpoint (`tl_hf.select`): LogME against a direct maximisation of the evidence,
the ranking rule, and on tiny BERTs, a candidate whose features carry the label ranked above one
whose features cannot; `tl-hf select`, `select_checkpoint`, and `--candidates` in the recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import NEGATIVE, POSITIVE, make_tiny_bert, sentiment_rows, write_csv

from tl_hf.select.logme import _fixed_point, _spectrum, log_evidence, logme
from tl_hf.select.rank import Score, rank_scores


def _brute_force_max(features, target):
    """max over (alpha, beta) of the evidence computed from the marginal Gaussian directly
    (alpha may run off to infinity where the features explain nothing: only the value counts)."""
    from scipy.optimize import minimize

    def loss(p):
        p = np.clip(p, -30.0, 30.0)
        return -log_evidence(features, target, float(np.exp(p[0])), float(np.exp(p[1])))

    starts = [(a, b) for a in (-4.0, 0.0, 4.0) for b in (-2.0, 0.0, 2.0)]
    best = min(
        (
            minimize(loss, s, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12})
            for s in starts
        ),
        key=lambda r: r.fun,
    )
    return -best.fun


@pytest.mark.parametrize("n,dim", [(60, 8), (24, 40)])  # more rows than features, and fewer
def test_logme_is_the_maximum_evidence(n, dim):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 3, n)
    features = rng.normal(size=(n, dim))
    features[:, 0] += 1.5 * labels  # some signal, so the optimum is inside, not at a bound
    per_class = []
    for k in range(3):
        target = (labels == k).astype(float)
        best = _brute_force_max(features, target)
        u, s2, d = _spectrum(features)
        a, b = _fixed_point(n, d, s2, u.T @ target, float(target @ target))
        # the fixed point lands where the brute-force search does, with the same evidence
        assert log_evidence(features, target, a, b) == pytest.approx(best, abs=1e-6)
        per_class.append(best)
    assert logme(features, labels) == pytest.approx(np.mean(per_class), abs=1e-6)


def test_logme_prefers_features_that_separate_the_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    noise = rng.normal(size=(90, 16))
    separable = noise.copy()
    separable[np.arange(90), labels] += 4.0
    assert logme(separable, labels) > logme(noise, labels) + 0.1
    # scaling the features changes nothing the evidence can use
    assert logme(3.0 * separable, labels) == pytest.approx(logme(separable, labels), abs=1e-6)


def _score(name, acc, lm, params, ms=1.0):
    return Score(name, lm, acc, params, ms, 8, "pooler_output", "first", 0.1)


def test_rule_ties_within_one_standard_error_go_to_size_then_logme():
    from tl_hf.select.rank import resolution

    # 20 validation rows at 0.90: one standard error is sqrt(0.9 * 0.1 / 20) = 0.067
    assert resolution(0.9, 20) == pytest.approx(0.0671, abs=1e-4)
    assert resolution(1.0, 20) == pytest.approx(0.05)  # never below one example
    scores = [
        _score("mid", 0.90, -0.5, 50),
        _score("big", 0.85, -0.7, 100),  # 0.05 below: tied, and the largest
        _score("small_logme", 0.84, -0.3, 10),  # tied too, highest LogME, smallest
        _score("worse", 0.80, 0.0, 1000),  # 0.10 below: not tied, however large
    ]
    ordered = rank_scores(scores, validation_rows=20)
    assert [s.name for s in ordered] == ["big", "mid", "small_logme", "worse"]
    assert [s.rank for s in ordered] == [1, 2, 3, 4]
    assert [s.tied_with_best for s in ordered] == [True, True, True, False]
    # with 1,000 validation rows a 5-point gap is resolved: accuracy decides
    ordered = rank_scores([_score("a", 0.85, 0.0, 1), _score("b", 0.90, -1.0, 9)], 1000)
    assert [s.name for s in ordered] == ["b", "a"]
    # equal accuracy and size: the higher LogME, then the faster
    ordered = rank_scores([_score("a", 0.9, -0.5, 9), _score("b", 0.9, -0.4, 9)], 100)
    assert ordered[0].name == "b"
    ordered = rank_scores([_score("a", 0.9, -0.5, 9, 2.0), _score("b", 0.9, -0.5, 9, 1.0)], 100)
    assert ordered[0].name == "b"


def _set_words(path, rule):
    """Rewrite the word embeddings of the tiny BERT at `path` with `rule(embeddings, vocab)`."""
    import torch
    from transformers import BertForSequenceClassification, BertTokenizer

    model = BertForSequenceClassification.from_pretrained(path)
    vocab = BertTokenizer.from_pretrained(path).get_vocab()
    with torch.no_grad():
        rule(model.bert.embeddings.word_embeddings.weight, vocab)
    model.save_pretrained(path)
    return str(path)


def _label_carrier(path):
    """Positive words point one way, negative words the other: features carry the label."""

    def rule(weight, vocab):
        import torch

        # zero mean, so the embedding LayerNorm keeps it
        direction = torch.linspace(-1.0, 1.0, weight.shape[1])
        for word in POSITIVE:
            weight[vocab[word]] = 3.0 * direction
        for word in NEGATIVE:
            weight[vocab[word]] = -3.0 * direction

    return _set_words(make_tiny_bert(path, layers=1), rule)


def _label_blind(path):
    """Every sentiment word has one embedding: nothing in the features can tell the labels."""

    def rule(weight, vocab):
        shared = weight[vocab[POSITIVE[0]]].clone()
        for word in POSITIVE + NEGATIVE:
            weight[vocab[word]] = shared

    return _set_words(make_tiny_bert(path, layers=2), rule)


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("candidates")
    data = write_csv(root / "train.csv", sentiment_rows(120))
    return _label_blind(root / "blind"), _label_carrier(root / "carrier"), data


@pytest.fixture(autouse=True)
def _own_caches(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def test_the_candidate_whose_features_carry_the_label_ranks_first(candidates, tmp_path):
    import tl_hf

    blind, carrier, data = candidates
    out = tmp_path / "select"
    selection = tl_hf.select_checkpoint(
        "text",
        [blind, carrier],
        train_file=data,
        validation_split_percentage=25,
        test_split_percentage=0,
        pooling="mean",  # what a sentence-embedding checkpoint declares: the words' mean
        output_dir=str(out),
    )
    assert selection.chosen == carrier and selection.chosen_path == carrier
    first, second = selection.scores
    assert first.probe_accuracy >= 0.95 and second.probe_accuracy <= 0.75
    assert first.logme > second.logme + 0.05, (first.logme, second.logme)
    assert first.parameters < second.parameters  # the pick is not the bigger model
    saved = json.loads((out / "selection.json").read_text())
    assert saved["chosen"] == "carrier" and saved["validation_rows"] == 30
    assert saved["train_rows"] == 90  # the validation rows are not in the probe's training set
    assert [c["name"] for c in saved["candidates"]] == ["carrier", "blind"]
    assert [c["rank"] for c in saved["candidates"]] == [1, 2]
    assert saved["candidates"][0]["features"] == "pooler_output (feature cache)"
    assert "LogME" in saved["rule"] and all(c["ms_per_example"] > 0 for c in saved["candidates"])


def _cli(argv):
    from tl_hf.cli.main import main

    return main(argv)


def test_unusable_candidates_are_left_out_and_the_others_ranked(candidates, tmp_path, capsys):
    import shutil

    blind, carrier, data = candidates
    broken = tmp_path / "broken"  # a valid config whose weights cannot be read: fails to load
    shutil.copytree(carrier, broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    missing = str(tmp_path / "missing")
    out = tmp_path / "out"
    argv = ["select", "text", "--candidates", blind, missing, str(broken), carrier]
    argv += ["--train_file", data, "--output_dir", str(out), "--pooling", "mean"]
    assert _cli(argv) == 0
    printed = capsys.readouterr().out
    assert f"candidate {missing} left out: " in printed and "is not a folder" in printed
    assert f"candidate {broken} left out: " in printed
    saved = json.loads((out / "selection.json").read_text())
    assert [c["name"] for c in saved["candidates"]] == ["carrier", "blind"]
    assert [c["name"] for c in saved["left_out"]] == ["missing", "broken"]
    assert "is not a folder" in saved["left_out"][0]["reason"]
    assert "/" not in saved["left_out"][0]["name"]  # local paths are not shared


def test_bad_candidates_stop_with_one_line_before_any_work(
    candidates, tmp_path, capsys, monkeypatch
):
    from transformers import ViTConfig, ViTForImageClassification

    blind, carrier, data = candidates
    image = tmp_path / "vit"
    ViTForImageClassification(
        ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ).save_pretrained(image)
    capsys.readouterr()
    out = tmp_path / "out"
    cases = {
        "no_such_folder": ([carrier, str(tmp_path / "missing")], "is not a folder"),
        "another_modality": ([carrier, str(image)], "give a text checkpoint"),
        "one_usable": ([carrier, str(image)], "only 1 of 2 candidates can be ranked"),
        "one_candidate": ([carrier], "at least two"),
        "twice": ([carrier, carrier], "twice"),
    }
    for names, expected in cases.values():
        argv = ["select", "text", "--candidates", *names, "--train_file", data]
        assert _cli([*argv, "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
        assert "features" not in capsys.readouterr().out
    # the data's labels do not fit: the same, before any candidate loads
    argv = ["select", "text", "--candidates", blind, carrier, "--train_file", data]
    assert _cli([*argv, "--label_column", "stars", "--output_dir", str(out)]) == 2
    assert "stars" in capsys.readouterr().err
    # no candidates and no installed ladder (tests/test_ladder.py ranks a stand-in one)
    monkeypatch.setattr("tl_hf.embedded.ladder.LADDER", ())
    assert _cli(["select", "text", "--train_file", data]) == 2
    assert "--candidates" in capsys.readouterr().err
    assert not out.exists()


def test_the_recipe_trains_the_pick_and_records_the_ranking(candidates, tmp_path, capsys):
    import yaml

    from tl_hf.cli.recipe import main as recipe_main
    from tl_hf.config import parse_args

    blind, carrier, data = candidates
    out = tmp_path / "run"
    argv = ["--candidates", blind, carrier, "--train_file", data, "--output_dir", str(out)]
    argv += ["--strategy", "frozen", "--num_train_epochs", "1", "--test_split_percentage", "0"]
    assert recipe_main("text", argv) == 0
    printed = capsys.readouterr().out
    assert "#1 " in printed and "training the chosen checkpoint" in printed
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["model_name_or_path"].endswith("carrier")
    assert config["candidates"] == ["./blind", "./carrier"]  # local paths: their last part
    assert [r["name"] for r in config["selection"]["ranking"]] == ["carrier", "blind"]
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1  # carrier's
    card = (out / "README.md").read_text()
    assert "## Checkpoint selection" in card and "`carrier`" in card and "`blind`" in card
    assert json.loads((out / "selection.json").read_text())["chosen"] == "carrier"
    # run_config.yaml reruns it: the candidates rank again (the recorded pick is not forced)
    (out / "rerun.yaml").write_text(
        yaml.safe_dump({**config, "candidates": [blind, carrier], "output_dir": str(out)})
    )
    again = parse_args("text", ["--config", str(out / "rerun.yaml")])
    assert again.model.candidates == [blind, carrier] and again.model.model_name_or_path is None
    with pytest.raises(Exception, match="not both"):
        parse_args("text", ["--candidates", blind, carrier, "--model_name_or_path", carrier])


def test_image_candidates_of_different_widths(tmp_path, capsys):
    from test_recipe_image import make_image_folder, make_tiny_resnet

    data = make_image_folder(tmp_path / "images", per_class=10)
    narrow = make_tiny_resnet(tmp_path / "narrow")
    wide = tmp_path / "wide"
    make_tiny_resnet(wide)
    config = json.loads((wide / "config.json").read_text())
    from transformers import ResNetConfig, ResNetForImageClassification

    ResNetForImageClassification(
        ResNetConfig(**{**config, "hidden_sizes": [8, 48]})
    ).save_pretrained(wide)
    out = tmp_path / "select"
    argv = ["select", "image", "--candidates", narrow, str(wide), "--dataset_name", data]
    assert _cli([*argv, "--output_dir", str(out), "--validation_split_percentage", "30"]) == 0
    saved = json.loads((out / "selection.json").read_text())
    dims = {c["name"]: c["feature_dim"] for c in saved["candidates"]}
    assert dims == {"narrow": 16, "wide": 48}  # each read through its own pooled output
    assert all("pooler_output" in c["features"] for c in saved["candidates"])
    printed = capsys.readouterr().out
    assert printed.count("probe accuracy") == 2 and "<- chosen" in printed


def test_backbone_hash_reads_0_d_buffers():
    """BatchNorm's `num_batches_tracked` is a 0-d int64 buffer: the feature cache's backbone
    hash must read it (it raised before, so no BatchNorm model could cache features)."""
    import torch

    from tl_hf.training.feature_files import hash_backbone

    norm = torch.nn.BatchNorm1d(4)
    before = hash_backbone(norm)
    norm.num_batches_tracked += 1
    assert hash_backbone(norm) != before


def test_a_lab_with_candidates_ranks_them_and_runs_its_grid_on_the_pick(candidates, tmp_path):
    from tl_hf.lab import run_lab

    blind, carrier, data = candidates
    kwargs = dict(
        candidates=[blind, carrier],
        train_file=data,
        output_dir=str(tmp_path / "lab"),
        strategies=["frozen"],
        learning_rates=["1e-2"],
        seeds=1,
        num_train_epochs=1,
        pooling="mean",
        test_split_percentage=20,
        use_cpu=True,
    )
    result = run_lab("text", **kwargs)
    assert [r["config"] for r in result.rows] == ["model=carrier frozen lr=0.01 layers=0 aug=none"]
    assert result.rows[0]["model"] == carrier
    assert json.loads((tmp_path / "lab" / "selection.json").read_text())["chosen"] == "carrier"
    winner = (tmp_path / "lab" / "winner" / "run_config.yaml").read_text()
    assert "model_name_or_path: ./carrier" in winner and "--model_name_or_path ./carrier" in winner
    # a rerun reads the study's ranking instead of ranking again, and finds nothing to run
    again = run_lab("text", **kwargs)
    assert [r["number"] for r in again.rows] == [r["number"] for r in result.rows]
