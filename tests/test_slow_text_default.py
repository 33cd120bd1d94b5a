"""The embedded text default on the real all-MiniLM-L6-v2 and BBC News (slow: minutes)."""

import json
import os

import pytest

from tl_hf.cli.recipe import main


@pytest.mark.slow
def test_embedded_default_on_real_minilm(tmp_path, capsys):
    from transformers import pipeline

    out = tmp_path / "default"
    # The default run with no data flags, shortened: the linear probe, then 1 fine-tuning
    # epoch on 30 articles per class (test accuracy 0.92 measured; 0.91 after 2 epochs).
    code = main(
        "text",
        [
            "--output_dir",
            str(out),
            "--max_train_samples",
            "150",
            "--max_eval_samples",
            "50",
            "--max_test_samples",
            "100",
            "--num_train_epochs",
            "1",
            "--max_seq_length",
            "96",
        ],
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "[tl-hf] test: accuracy" in printed and f"model saved to {out}" in printed
    results = json.loads((out / "all_results.json").read_text())
    assert set(results["test_per_class"]) == {
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    }
    assert results["train_samples"] == 150 and results["test_samples"] == 100
    assert results["test_accuracy"] >= 0.6  # chance is 0.2; the pretrained encoder transfers
    groups = json.loads((out / "param_groups.json").read_text())
    # the default: lp_ft on the declared mean pooling, a pooling block appended to the 6
    # blocks: embeddings, 7 blocks, pooler + head
    assert results["strategy"] == "lp_ft"
    assert {g["depth"] for g in groups} == set(range(9))
    classify = pipeline("text-classification", model=str(out))
    label = classify("The striker scored twice as the club won the league title on Saturday.")[0][
        "label"
    ]
    assert label in results["test_per_class"]
    assert os.path.exists(out / "model.safetensors")
