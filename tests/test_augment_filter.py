"""The label-consistency filter (`--augment_filter probe`, issue 26): a stored augmented copy
whose text now reads as another class is dropped, the others are kept; the flag's bad uses are
one line before anything loads; the recipe prints what it kept."""

import pytest
from conftest import sentiment_rows, write_csv

from tl_hf.errors import UserError


def _originals(n=40):
    from datasets import ClassLabel, Dataset, Features, Value

    rows = sentiment_rows(n)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    return Dataset.from_dict(
        {
            "text": [r["sentence"] for r in rows],
            "label": [int(r["sentiment"] == "pos") for r in rows],
        },
        features=features,
    )


def test_a_copy_whose_probe_label_flips_is_dropped(tiny_bert, tmp_path):
    from datasets import concatenate_datasets

    from tl_hf.augment.consistency import consistent_copies
    from tl_hf.config import build_args
    from tl_hf.config.resolve import options_for
    from tl_hf.pipeline import plan_run
    from tl_hf.strategies.base import get_strategy

    originals = _originals()
    texts, labels = originals["text"], originals["label"]
    # the copies: each original unchanged, except 6 that took a text of the other class (a
    # rewrite that lost the label) while keeping their own label
    flipped = {0, 3, 8, 13, 21, 30}
    other = {lab: [t for t, y in zip(texts, labels, strict=True) if y != lab] for lab in (0, 1)}
    copy_texts = [other[labels[i]][i % 5] if i in flipped else texts[i] for i in range(40)]
    copies = originals.map(lambda row, i: {"text": copy_texts[i]}, with_indices=True)
    stored = concatenate_datasets([originals, copies])
    args = build_args(
        "text",
        stored,
        model_name_or_path=tiny_bert,
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        augment=["synonym"],
        augment_copies=1,
        augment_filter="probe",
    )
    options = options_for(args, get_strategy("frozen"), trainable_layers=0, cache_features=True)
    kept, dropped = consistent_copies(plan_run(args), originals, stored, 0, options)
    assert kept["text"][:40] == texts  # the originals are never touched
    kept_copies = kept["text"][40:]
    survivors = [t for i, t in enumerate(copy_texts) if i not in flipped]
    assert dropped == 40 - len(kept_copies) and dropped >= len(flipped)
    for i in flipped:  # every rewrite that reads as the other class is gone
        assert not any(
            t == copy_texts[i] and y == labels[i]
            for t, y in zip(kept_copies, kept["label"][40:], strict=True)
        )
    assert len(kept_copies) >= 0.9 * len(survivors)  # the unchanged copies stay (probe fit)


def test_the_recipe_filters_and_says_how_many(tiny_bert, tmp_path, capsys):
    from tl_hf.cli.recipe import main

    csv = write_csv(tmp_path / "train.csv", sentiment_rows(40))
    code = main(
        "text",
        [
            "--model_name_or_path",
            tiny_bert,
            "--train_file",
            csv,
            "--output_dir",
            str(tmp_path / "out"),
            "--use_cpu",
            "--num_train_epochs",
            "1",
            "--strategy",
            "frozen",
            "--augment",
            "swap",
            "--augment_copies",
            "2",
            "--augment_filter",
            "probe",
            "--report_to",
            "none",
        ],
    )
    printed = capsys.readouterr().out
    assert code == 0
    line = next(x for x in printed.splitlines() if "augmentation filter: kept" in x)
    kept, total = (int(w) for w in line.split("kept ")[1].split(" augmented")[0].split(" of "))
    assert 0 < kept <= total


@pytest.mark.parametrize(
    "flags",
    [
        {"augment_filter": "probe"},  # nothing to filter
        {"augment_filter": "probe", "augment": ["swap"], "augment_mode": "on_the_fly"},
        {"augment_filter": "maybe", "augment": ["swap"], "augment_copies": 1},
    ],
)
def test_the_filter_needs_stored_copies(tiny_bert, tmp_path, flags):
    from tl_hf.config import build_args
    from tl_hf.pipeline import plan_run

    with pytest.raises(UserError) as err:
        plan_run(build_args("text", None, model_name_or_path=tiny_bert, **flags))
    message = str(err.value)
    assert "--augment_filter" in message and (
        "--augment_copies K" in message or "choose none or probe" in message
    )
