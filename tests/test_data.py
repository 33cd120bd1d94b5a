"""Data step: every source format, column detection, label encoding, stratified splits,
and the bad inputs that must stop a run before training."""

import collections
import json

import pytest
from conftest import sentiment_rows, write_csv

from tl_hf.config import DataArguments
from tl_hf.data.load import load_classification_data
from tl_hf.errors import UserError
from tl_hf.modalities.text import MODALITY as text_modality


def load(data_args=None, dataset=None, seed=0):
    return load_classification_data(data_args or DataArguments(), text_modality, seed, dataset)


def counts(ds):
    return collections.Counter(ds.features["label"].int2str(i) for i in ds["label"])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_each_file_format(tmp_path, fmt):
    import pandas as pd

    frame = pd.DataFrame(sentiment_rows(40))
    path = tmp_path / f"train.{fmt}"
    if fmt in ("csv", "tsv"):
        frame.to_csv(path, index=False, sep="," if fmt == "csv" else "\t")
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    dsd = load(DataArguments(train_file=str(path), validation_split_percentage=25))
    assert set(dsd) == {"train", "validation"}
    assert len(dsd["train"]) + len(dsd["validation"]) == 40
    assert dsd["train"].column_names == ["text", "label"]
    assert dsd["train"].features["label"].names == ["neg", "pos"]


def test_dataset_name_as_file_and_separate_splits(tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(30, seed=1))
    val = write_csv(tmp_path / "val.csv", sentiment_rows(10, seed=2))
    test = write_csv(tmp_path / "test.csv", sentiment_rows(12, seed=3))
    dsd = load(DataArguments(train_file=train, validation_file=val, test_file=test))
    assert [len(dsd[s]) for s in ("train", "validation", "test")] == [30, 10, 12]
    assert len(load(DataArguments(dataset_name=train))["validation"]) == 3  # 10% carved


def test_save_to_disk_folder_and_in_memory(tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_list(sentiment_rows(40))
    DatasetDict(train=ds, dev=ds.select(range(8))).save_to_disk(tmp_path / "saved")
    dsd = load(DataArguments(dataset_name=str(tmp_path / "saved")))
    assert len(dsd["validation"]) == 8  # the 'dev' alias became validation
    assert len(load(dataset=ds)["train"]) == 36


def test_class_per_subfolder_text_folder(tmp_path):
    for label in ("sport", "tech"):
        (tmp_path / "corpus" / label).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "corpus" / label / f"{i}.txt").write_text(f"{label} article number {i}")
    dsd = load(DataArguments(dataset_name=str(tmp_path / "corpus"), validation_split_percentage=34))
    assert dsd["train"].features["label"].names == ["sport", "tech"]
    assert all(
        t.startswith(dsd["train"].features["label"].int2str(lab))
        for t, lab in zip(dsd["train"]["text"], dsd["train"]["label"])
    )


def test_integer_labels_become_classlabel_named_by_value():
    from datasets import Dataset

    rows = [{"text": f"t {i}", "label": [3, 7, 11][i % 3]} for i in range(30)]
    dsd = load(dataset=Dataset.from_list(rows))
    feature = dsd["train"].features["label"]
    assert feature.names == ["3", "7", "11"]
    original = {r["text"]: str(r["label"]) for r in rows}
    assert all(
        original[t] == feature.int2str(lab)
        for t, lab in zip(dsd["train"]["text"], dsd["train"]["label"])
    )


def test_string_labels_sorted_and_consistent_across_splits():
    from datasets import Dataset, DatasetDict

    train = Dataset.from_list(
        [{"text": f"x{i}", "label": ["zebra", "apple", "mango"][i % 3]} for i in range(30)]
    )
    val = Dataset.from_list(
        [
            {"text": "v", "label": "mango"},
            {"text": "w", "label": "apple"},
            {"text": "u", "label": "zebra"},
        ]
    )
    dsd = load(dataset=DatasetDict(train=train, validation=val))
    names = dsd["train"].features["label"].names
    assert names == ["apple", "mango", "zebra"]
    assert dsd["validation"].features["label"].names == names
    assert [names[i] for i in dsd["validation"]["label"]] == ["mango", "apple", "zebra"]


def test_stratified_validation_split_keeps_proportions():
    from datasets import Dataset

    rows = [{"text": f"r{i}", "label": "a" if i < 160 else "b"} for i in range(200)]  # 80/20
    dsd = load(DataArguments(validation_split_percentage=25), dataset=Dataset.from_list(rows))
    assert counts(dsd["validation"]) == {"a": 40, "b": 10}
    assert counts(dsd["train"]) == {"a": 120, "b": 30}
    assert not set(dsd["train"]["text"]) & set(dsd["validation"]["text"])


def test_max_samples_are_stratified():
    from datasets import Dataset

    rows = [{"text": f"r{i}", "label": "abc"[i % 3]} for i in range(300)]
    dsd = load(
        DataArguments(max_train_samples=30, max_eval_samples=9), dataset=Dataset.from_list(rows)
    )
    assert counts(dsd["train"]) == {"a": 10, "b": 10, "c": 10}
    assert len(dsd["validation"]) == 9


def test_sentence_pairs_detected():
    from datasets import Dataset

    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 2} for i in range(20)]
    dsd = load(dataset=Dataset.from_list(rows))
    assert dsd["train"].column_names == ["text", "text_pair", "label"]


# ---- bad input: one clear message each ------------------------------------------------------


def test_missing_column_lists_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", sentiment_rows(20))
    with pytest.raises(
        UserError, match="text column 'body' not found; columns are: sentence, sentiment"
    ):
        load(DataArguments(train_file=path, text_column="body"))
    with pytest.raises(
        UserError, match="label column 'y' not found; columns are: sentence, sentiment"
    ):
        load(DataArguments(train_file=path, label_column="y"))


def test_ambiguous_text_column_asks_for_flag():
    from datasets import Dataset

    rows = [{"title": f"t{i}", "summary": f"s{i}", "label": i % 2} for i in range(20)]
    with pytest.raises(UserError, match="pass --text_column"):
        load(dataset=Dataset.from_list(rows))


def test_single_class():
    from datasets import Dataset

    with pytest.raises(UserError, match="single class \\(pos\\)"):
        load(dataset=Dataset.from_list([{"text": f"t{i}", "label": "pos"} for i in range(20)]))


def test_empty_and_null_texts():
    from datasets import Dataset

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(20)]
    rows[3]["text"], rows[7]["text"] = "   ", None
    with pytest.raises(UserError, match="2 empty or missing texts in the train split.*rows 3, 7"):
        load(dataset=Dataset.from_list(rows))


def test_validation_labels_unseen_in_training(tmp_path):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(20))
    val = write_csv(
        tmp_path / "v.csv",
        [
            {"sentence": "good film", "sentiment": "neutral"},
            {"sentence": "bad", "sentiment": "neg"},
        ],
    )
    with pytest.raises(UserError, match="validation labels unseen in training: neutral"):
        load(DataArguments(train_file=train, validation_file=val))


def test_too_small_to_split():
    from datasets import Dataset

    rows = [{"text": f"t{i}", "label": "abcd"[i % 4]} for i in range(8)]
    with pytest.raises(
        UserError, match="too small to carve a stratified validation split: 8 rows in 4 classes"
    ):
        load(DataArguments(validation_split_percentage=10), dataset=Dataset.from_list(rows))


def test_missing_data_file(tmp_path):
    with pytest.raises(UserError, match="the train file .*nope.csv does not exist"):
        load(DataArguments(train_file=str(tmp_path / "nope.csv")))
    with pytest.raises(UserError, match="does not exist"):
        load(DataArguments(dataset_name="./no/such/folder"))


def test_unsupported_file_type(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(UserError, match="use a .csv, .tsv, .json, .jsonl or .parquet file"):
        load(DataArguments(train_file=str(tmp_path / "d.xlsx")))
