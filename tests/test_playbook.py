"""The playbook: its decisions on synthetic under- and overfitting histories, the per-layer
probe against the model's own hidden states, the checkpoint's declared pooling, and a whole
playbook on a tiny BERT whose kept model reproduces the run's test predictions."""

import json
import os
import shutil

import pytest
from conftest import sentiment_rows, write_csv

from tests.run_folder import synthetic_history


def _diagnosis(kind):
    from tl_hf.report import diagnose

    if (
        kind == "overfitting"
    ):  # validation loss bottoms out at epoch 2, then climbs; train keeps falling
        history = synthetic_history([0.6, 0.4, 0.55, 0.75, 0.9], [0.6, 0.3, 0.12, 0.05, 0.02])
    else:  # training loss stays near chance (log 3 = 1.10)
        history = synthetic_history([1.09, 1.08, 1.08], [1.1, 1.09, 1.09])
    return diagnose(history, strategy="frozen")


def test_augmentation_step_runs_on_small_data_or_when_it_overfits():
    from tl_hf.lab.augment_step import SMALL_PER_CLASS, augmentation_decision

    overfit, underfit = _diagnosis("overfitting"), _diagnosis("underfitting")
    assert overfit["verdict"] == "overfitting" and underfit["verdict"] == "underfitting"
    large = SMALL_PER_CLASS + 1
    ran, why = augmentation_decision("llrd lr=0.0001 decay=0.8 aug=none", overfit, large)
    assert ran and "overfits" in why
    ran, why = augmentation_decision("frozen lr=0.001 layers=0 aug=none", underfit, large)
    assert not ran and "underfitting, not overfitting" in why
    # small data: always, whatever the diagnosis, and the reason names the size
    ran, why = augmentation_decision("frozen lr=0.001 layers=0 aug=none", underfit, SMALL_PER_CLASS)
    assert ran and f"{SMALL_PER_CLASS} training rows per class" in why and "underfitting" in why
    assert augmentation_decision(None, underfit, 8) == (
        False,
        "no configuration finished: nothing to augment",
    )


def test_playbook_policies_are_valid_augment_sets_per_modality():
    """Every policy the step may try parses as an augmentation of its modality, once as stored
    copies (the screen) and once on the fly (the fine-tune)."""
    from tl_hf.augment.base import augment_module, parse_augment_specs
    from tl_hf.lab.augment_step import SCREEN_COPIES, playbook_policies, policy_sets
    from tl_hf.lab.grid import parse_augment_sets
    from tl_hf.modalities.base import get_modality

    for name in ("text", "image", "audio"):
        modality = get_modality(name)
        policies = playbook_policies(modality)
        assert len(policies) >= 2
        sets = parse_augment_sets(policy_sets(modality))
        assert len(sets) == 2 * len(policies)
        module = augment_module(modality)
        for policy in policies:
            screen, fly = sets[f"{policy}@copies={SCREEN_COPIES}"], sets[f"{policy}@on_the_fly"]
            assert (screen.mode, screen.copies, fly.mode) == ("map", SCREEN_COPIES, "on_the_fly")
            items = screen.items if screen.items is not None else module.DEFAULT_AUGMENT
            specs = parse_augment_specs(items, module.AUGMENTATIONS, module.DEFAULT_AUGMENT)
            batch = set(getattr(module, "BATCH_LEVEL", ()))
            assert specs and not {s.name for s in specs} & batch  # stored copies can hold them


def test_extra_strategies_follow_probe_and_diagnosis():
    from tl_hf.lab.playbook import extra_strategies

    known = {"frozen", "full", "llrd", "lp_ft", "gradual", "lora"}
    top = {"peak_depth": 6, "num_blocks": 6}
    middle = {"peak_depth": 3, "num_blocks": 6}
    underfit, overfit = _diagnosis("underfitting"), _diagnosis("overfitting")
    assert set(extra_strategies(underfit, top, 40, known)) == {"lp_ft", "gradual"}
    assert set(extra_strategies(underfit, middle, 400, known)) == set()
    assert set(extra_strategies(overfit, middle, 40, known)) == {"lora"}
    # a sentence-embedding checkpoint's declared mean pooling: probe first, whatever the depth
    declared = {**middle, "pooling": "mean", "pooling_declared": True}
    assert set(extra_strategies(overfit, declared, 40, known)) == {"lora", "lp_ft"}
    assert (
        extra_strategies(underfit, top, 40, {"frozen", "full", "llrd"}) == {}
    )  # only known strategies


def test_propose_reads_layers_and_decay_off_the_curve():
    from tl_hf.lab.probe import propose

    at_top = propose([0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95], 6)
    assert (
        at_top["peak_depth"] == 6
        and at_top["trainable_layers"] == 1
        and at_top["llrd_decay"] == 0.5
    )
    early = propose([0.5, 0.9, 0.95, 0.95, 0.94, 0.93, 0.92], 6)
    assert early["peak_depth"] == 2 and early["trainable_layers"] == 4
    assert early["llrd_decay"] == pytest.approx(round(0.25 ** (1 / 5), 2))


def _tiny_batch(tiny_bert):
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
    )

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    texts = ["good great film", "the plot was awful and boring", "fine", "bad movie very dull plot"]
    rows = [{**tokenizer(t), "labels": i % 2} for i, t in enumerate(texts)]
    return model, rows, DataCollatorWithPadding(tokenizer)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_probe_features_match_the_hidden_states(tiny_bert, pooling):
    import torch

    from tl_hf.lab.probe import layer_features

    model, rows, collate = _tiny_batch(tiny_bert)
    features, labels = layer_features(model, rows, collate, pooling, batch_size=3)  # two batches
    batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows])
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    assert len(features) == len(hidden) == 3  # embeddings + 2 blocks
    mask = batch["attention_mask"][..., None].float()
    for depth, h in enumerate(hidden):
        expected = h[:, 0] if pooling == "cls" else (h * mask).sum(1) / mask.sum(1)
        assert torch.allclose(torch.as_tensor(features[depth]), expected, atol=1e-5)
    assert labels.tolist() == [0, 1, 0, 1]


def test_declared_mean_pooling_is_used(tiny_bert, tmp_path):
    from datasets import Dataset, DatasetDict

    from tl_hf.lab.probe import declared_pooling, run_probe

    checkpoint = tmp_path / "sentence_model"
    shutil.copytree(tiny_bert, checkpoint)
    assert declared_pooling(str(checkpoint)) is None
    (checkpoint / "1_Pooling").mkdir()
    (checkpoint / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )
    assert declared_pooling(str(checkpoint)) == "mean"
    model, rows, collate = _tiny_batch(tiny_bert)
    split = Dataset.from_list(rows * 4)
    result = run_probe(model, DatasetDict(train=split, validation=split), collate, str(checkpoint))
    assert result.pooling == "mean" and result.pooling_declared
    assert len(result.accuracy) == 3 and all(0 <= a <= 1 for a in result.accuracy)


def test_ladder_moves_by_size_and_carries_what_the_split_cannot_separate():
    from tl_hf.lab.ladder import Ladder, carried

    sizes = {"s": 1_000, "m": 5_000, "l": 9_000, "xl": 20_000}
    ladder = Ladder(ranked=["m", "xl", "s", "l"], parameters=sizes, carried=["m"], tried=["m"])
    assert ladder.next_along("underfitting", "m") == "l"  # the next larger, not the largest
    assert ladder.next_along("overfitting", "m") == "s"
    assert ladder.next_along("healthy", "m") is None
    ladder.tried += ["l"]
    assert ladder.next_along("underfitting", "m") == "xl"
    assert ladder.next_along("overfitting", "s") is None
    # one standard error of 0.80 on 100 rows is 0.04: 0.77 is within it, 0.75 is not; the
    # ranking's ties are what is carried
    from tl_hf.select.rank import Score, rank_scores

    def ranked(second):
        scores = [
            Score(name, 0.0, acc, size, 1.0, 8, "pooler_output", "first", 0.1)
            for name, acc, size in [("a", 0.80, 10), ("b", second, 5)]
        ]
        return [s.as_dict() for s in rank_scores(scores, 100)]

    assert carried(ranked(0.77)) == ["a", "b"]
    assert carried(ranked(0.75)) == ["a"]


def test_an_underfitting_baseline_climbs_to_the_next_larger_candidate(monkeypatch):
    from types import SimpleNamespace

    from tl_hf.lab.ladder import Ladder, climb

    session = SimpleNamespace(greater=True, out_of_time=lambda: False)
    sizes = {"small": 1, "mid": 2, "big": 3}
    means = {"small": 0.60, "mid": 0.70, "big": 0.65}
    ran = []

    def baseline(name):
        ran.append(name)
        return {"config": f"model={name} frozen", "mean": means[name]}

    ladder = Ladder(["small", "big", "mid"], sizes, ["small"], ["small"])
    trail = []
    underfits = {"verdict": "underfitting"}
    assert climb(session, trail, ladder, "small", underfits, baseline) == "mid"
    assert "mid" in ran and "big" not in ran and ladder.carried == ["mid", "small"]
    assert trail[-1]["ran"] and "next larger candidate (mid" in trail[-1]["why"]
    # from mid, still underfitting: big is tried but its baseline is worse: mid stays
    assert climb(session, trail, ladder, "mid", underfits, baseline) == "mid"
    assert "(it did not beat it)" in trail[-1]["why"]
    # nothing larger is left: no move, said so
    assert climb(session, trail, ladder, "big", underfits, baseline) == "big"
    assert not trail[-1]["ran"] and "no larger candidate" in trail[-1]["why"]
    healthy = {"verdict": "healthy"}
    assert climb(session, trail, ladder, "mid", healthy, baseline) == "mid"
    assert not trail[-1]["ran"]


def test_playbook_end_to_end(tiny_bert, tmp_path):
    from conftest import make_tiny_bert
    from transformers import pipeline

    from tl_hf import run_playbook
    from tl_hf.lab.playbook import _known_strategies

    train = write_csv(tmp_path / "train.csv", sentiment_rows(80, seed=1))
    test_rows = sentiment_rows(16, seed=2)
    test = write_csv(tmp_path / "test.csv", test_rows)
    out = tmp_path / "playbook"
    # step 0 ranks two checkpoints; a third cannot be used and is left out
    other = make_tiny_bert(tmp_path / "other", layers=1)
    result = run_playbook(
        "text",
        candidates=[tiny_bert, str(other), str(tmp_path / "missing")],
        train_file=train,
        test_file=test,
        output_dir=str(out),
        seeds=1,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        validation_split_percentage=25,
        use_cpu=True,
    )
    trail = {
        s["step"][:2].strip(". "): s
        for s in json.loads((out / "playbook.json").read_text())["trail"]
    }
    assert list(trail) == ["0", "1", "1b", "2", "3", "4", "5"]
    selection = trail["0"]["selection"]
    ranked = [os.path.basename(n) for n in selection["ranked"]]
    assert trail["0"]["ran"] and sorted(ranked) == ["other", os.path.basename(tiny_bert)]
    assert [os.path.basename(c["name"]) for c in selection["left_out"]] == ["missing"]
    assert json.loads((out / "selection.json").read_text())["chosen"] == ranked[0]
    assert "(--candidates)" in trail["0"]["why"]
    primary = trail["1"]["result"]["config"].split()[0].removeprefix("model=")
    assert primary in trail["0"]["carried"]  # the baselines ran on the carried checkpoints
    misfit = trail["1"]["diagnosis"]["verdict"] in ("underfitting", "overfitting")
    if trail["1b"]["ran"]:
        assert misfit and len(trail["0"]["carried"]) < 2
    elif misfit and len(trail["0"]["carried"]) < 2:  # at the ladder's end in that direction
        assert "candidate is left" in trail["1b"]["why"], trail["1b"]["why"]
    assert trail["2"]["ran"] and len(trail["2"]["probe"]["accuracy"]) in (2, 3)
    assert trail["3"]["ran"] and any("llrd" in c for c in trail["3"]["configs"])
    assert all(c.startswith("model=") for c in trail["3"]["configs"])
    # 30 training rows per class: the augmentation step runs whatever the diagnosis, screens
    # both text policies on the frozen head and reports each beside none
    assert trail["4"]["ran"] and "30 training rows per class" in trail["4"]["why"]
    screened = {t["policy"]: t["screen"] for t in trail["4"]["policies"]}
    assert set(screened) == {"synonym", "insertion"} and None not in screened.values()
    assert any("aug=synonym@copies=4" in c for c in trail["4"]["configs"])
    previews = trail["4"]["previews"]["synonym"]
    assert all((out / p).is_file() for p in previews)
    # 60 training rows in 2 classes: an underfitting baseline argues for gradual unfreezing
    if trail["1"]["diagnosis"]["verdict"] == "underfitting" and "gradual" in _known_strategies():
        assert any(" gradual " in c for c in trail["3"]["configs"]), trail["3"]["configs"]
    page = (out / "playbook_report.html").read_text()
    assert (
        "0. checkpoint selection (ran)" in page
        and "2. per-layer probe (ran)" in page
        and page.count("data:image/png") >= 3
        and "The final recipe" in page
        and "4. augmentation (ran)" in page
        and "synonym: a preview" in page
    )
    winner = result.winner
    assert winner["pooling"] == "first" and "the stock transformers class" in trail["5"]["why"]
    chosen = winner["config"].split()[0].removeprefix("model=")
    assert f"--model_name_or_path ./{chosen}" in winner["command"]
    hidden = json.loads((out / "winner" / "config.json").read_text())["num_hidden_layers"]
    assert hidden == (1 if chosen == "other" else 2)  # the winner's folder holds its checkpoint
    card = (out / "winner" / "README.md").read_text()
    assert str(tmp_path) not in card.split("How this model was chosen")[1]  # no local path
    assert "How this model was chosen (tl-hf playbook)" in card and winner["command"] in card
    # the kept model loads with pipeline() and reproduces the run's test predictions
    saved = json.loads((out / "winner" / "test_predictions.json").read_text())
    classify = pipeline("text-classification", model=str(out / "winner"))
    label2id = classify.model.config.label2id
    predicted = [label2id[p["label"]] for p in classify([r["sentence"] for r in test_rows])]
    assert predicted == saved["predictions"]


def _winner_session(monkeypatch, reference: str, validation_rows: int):
    """A playbook session as `choose_winner` reads it, with a validation split of that size."""
    from types import SimpleNamespace

    import tl_hf.lab as lab

    monkeypatch.setattr(
        lab.winner,
        "prepared_for",
        lambda s, name, model=None: SimpleNamespace(features={"validation": [0] * validation_rows}),
    )
    objective = SimpleNamespace(objective="eval_accuracy")
    return SimpleNamespace(greater=True, lab=objective, reference=reference, model=None)


def test_winner_keeps_the_recipe_default_within_one_standard_error(monkeypatch):
    import tl_hf.lab as lab
    from tl_hf.lab.playbook import choice_sentence

    reference = "llrd lr=0.0001 decay=0.8 aug=none"
    session = _winner_session(monkeypatch, reference, validation_rows=16)

    def summary(best_mean):
        return [
            {"config": "full lr=1.67e-05 aug=none", "mean": best_mean, "rank": 1},
            {"config": reference, "mean": 0.75, "rank": 2},
        ]

    # one standard error of an accuracy of 0.75 on 16 rows: sqrt(0.75 * 0.25 / 16) = 0.108
    chosen, choice = lab.choose_winner(session, summary(0.8125))
    assert chosen["config"] == reference and choice["kept_reference"]
    assert choice["margin"] == pytest.approx(0.1083, abs=1e-3)
    assert "recipe default is kept" in choice_sentence(choice)
    chosen, choice = lab.choose_winner(session, summary(0.9375))
    assert chosen["config"].startswith("full") and not choice["kept_reference"]
    # a reference that was pruned: the best, and the trail says why there was no comparison
    pruned = [summary(0.9)[0], {"config": reference, "mean": None, "rank": None}]
    chosen, choice = lab.choose_winner(session, pruned)
    assert chosen["rank"] == 1 and "pruned or did not finish" in choice_sentence(choice)
    # the recipe default itself is the best: said so
    first = [{**summary(0.7)[1], "rank": 1}, {**summary(0.7)[0], "rank": 2}]
    chosen, choice = lab.choose_winner(session, first)
    assert chosen["config"] == reference
    assert choice_sentence(choice).startswith(
        f"the recipe default ({reference}, 0.750) was the best"
    )
    # the plain lab has no reference; a loss objective has no binomial error: the best wins
    assert (
        lab.choose_winner(type(session)(**{**vars(session), "reference": None}), summary(0.8))[1]
        is None
    )
    session.lab.objective, session.greater = "eval_loss", False
    assert lab.choose_winner(session, summary(0.8))[0]["rank"] == 1


def test_an_augmented_winner_must_beat_its_unaugmented_twin(monkeypatch):
    """An augmented configuration is kept only when it beats the same configuration without
    augmentation by more than one standard error of the validation split; then the recipe
    default is weighed against whichever was kept."""
    import tl_hf.lab as lab
    from tl_hf.lab.playbook import choice_sentence

    reference = "llrd lr=0.0005 decay=0.8 aug=none"
    session = _winner_session(monkeypatch, reference, validation_rows=100)
    plain = "frozen lr=0.01 layers=1 aug=none"

    def summary(augmented_mean, plain_mean=0.80, reference_mean=0.70):
        rows = [
            {
                "config": "frozen lr=0.01 layers=1 aug=randaugment@on_the_fly",
                "mean": augmented_mean,
            },
            {"config": plain, "mean": plain_mean},
            {"config": reference, "mean": reference_mean},
        ]
        rows.sort(key=lambda r: -r["mean"])
        return [{**r, "rank": i + 1} for i, r in enumerate(rows)]

    # sqrt(0.8 * 0.2 / 100) = 0.04: +0.03 is not enough, the twin without augmentation is kept
    chosen, choice = lab.choose_winner(session, summary(0.83))
    assert chosen["config"] == plain and not choice["augmentation"]["kept_augmentation"]
    assert choice["augmentation"]["margin"] == pytest.approx(0.04)
    assert choice_sentence(choice).startswith("no augmentation is kept")
    assert not choice["kept_reference"]  # the twin beats the recipe default by 0.10 > 0.046
    # +0.05 is: the augmented configuration wins, and the sentence says why
    chosen, choice = lab.choose_winner(session, summary(0.85))
    assert chosen["config"].endswith("aug=randaugment@on_the_fly")
    assert choice_sentence(choice).startswith("the augmentation is kept")
    # an augmented best whose twin never ran is weighed only against the recipe default
    alone = [r for r in summary(0.85) if r["config"] != plain]
    chosen, choice = lab.choose_winner(session, alone)
    assert "augmentation" not in choice and chosen["config"].endswith("on_the_fly")
    # the twin kept, then within the margin of the recipe default: the default is kept
    chosen, choice = lab.choose_winner(session, summary(0.83, plain_mean=0.80, reference_mean=0.78))
    assert chosen["config"] == reference and choice["kept_reference"]


def test_the_reference_and_the_augmentation_screen_are_never_pruned():
    """The recipe default the winner is weighed against runs to its end even when the pruner
    would stop it (it was pruned on digits once, leaving the winner unweighed), and so do the
    augmentation step's trials (pruned, trivialaugment and synonym went unscored)."""
    from types import SimpleNamespace

    from tl_hf.lab.grid import TrialSpec
    from tl_hf.lab.trials import may_prune

    reference = TrialSpec("llrd", 5e-4, None, 0.8, "none", 42)
    other = TrialSpec("full", 1e-4, None, None, "none", 42)
    screened = TrialSpec("frozen", 1e-2, 0, None, "randaugment@copies=4", 42)
    session = SimpleNamespace(
        lab=SimpleNamespace(prune=True), reference=reference.config, never_prune=set()
    )
    assert not may_prune(session, reference) and may_prune(session, other)
    assert may_prune(session, screened)
    session.never_prune.add(screened.config)  # the augmentation step protects its trials
    assert not may_prune(session, screened) and may_prune(session, other)
    session.lab.prune = False
    assert not may_prune(session, other)


def _labels(per_class: int, classes: int = 3):
    from datasets import ClassLabel, Dataset, Features

    names = [f"c{i}" for i in range(classes)]
    labels = [i % classes for i in range(per_class * classes)]
    return Dataset.from_dict(
        {"label": labels}, features=Features({"label": ClassLabel(names=names)})
    )


@pytest.mark.parametrize(
    "per_class, strategy, expected",
    [
        (20, "llrd", "randaugment@on_the_fly"),  # the recipe turns it on: so does its reference
        (100, "llrd", "none"),  # above the measured threshold
        (20, "frozen", "none"),  # a head on frozen features keeps its cache
    ],
)
def test_the_reference_gets_the_recipes_own_small_data_augmentation(
    monkeypatch, per_class, strategy, expected
):
    """The playbook's reference is the recipe default as the recipe would run it on this data,
    with the augmentation the recipe's small-data rule gives it (issue 24: the same rule)."""
    from types import SimpleNamespace

    import tl_hf.lab.data as lab_data
    from tl_hf.config import build_args
    from tl_hf.lab.augment_step import policy_sets, recipe_augment_set, small_data_set
    from tl_hf.lab.grid import parse_augment_sets
    from tl_hf.modalities.base import get_modality

    train = _labels(per_class)
    monkeypatch.setattr(
        lab_data, "prepared_for", lambda s, name, model=None: SimpleNamespace(originals=train)
    )
    session = SimpleNamespace(base=build_args("image", train, strategy=strategy), model=None)
    assert recipe_augment_set(session) == expected
    image = get_modality("image")
    assert small_data_set(image) in parse_augment_sets(policy_sets(image))  # registered
    assert small_data_set(get_modality("text")) is None
    text = SimpleNamespace(base=build_args("text", train), model=None)
    assert recipe_augment_set(text) == "none"


def test_an_augmented_reference_is_not_traded_for_its_unaugmented_twin(monkeypatch):
    """The twin rule weighs augmentation the playbook adds; the reference's augmentation is the
    recipe's own (what the user gets without the playbook), so only the reference rule applies."""
    import tl_hf.lab as lab

    reference = "llrd lr=0.0005 decay=0.8 aug=randaugment@on_the_fly"
    twin = "llrd lr=0.0005 decay=0.8 aug=none"
    session = _winner_session(monkeypatch, reference, validation_rows=100)
    summary = [
        {"config": reference, "mean": 0.82, "rank": 1},
        {"config": twin, "mean": 0.80, "rank": 2},
    ]
    chosen, choice = lab.choose_winner(session, summary)
    assert chosen["config"] == reference and "augmentation" not in choice
    # the twin ahead by less than the margin (0.038): the recipe default is still kept
    summary = [{**summary[1], "mean": 0.84, "rank": 1}, {**summary[0], "rank": 2}]
    chosen, choice = lab.choose_winner(session, summary)
    assert chosen["config"] == reference and choice["kept_reference"]
