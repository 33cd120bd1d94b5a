"""The modality extension point: a toy tabular modality declared and registered from outside
`tl_hf` (tests/toy_tabular.py) trains end to end through a recipe of its own."""

import json
import os
import random
import subprocess
import sys

import pytest
from conftest import REPO, write_csv

from tl_hf.errors import UserError
from tl_hf.modality import BUILTIN, Modality, get_modality, modality_names

TESTS = os.path.dirname(os.path.abspath(__file__))


def tabular_rows(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        centre = 1.5 if label else -1.5
        rows.append(
            {
                **{f"x{j}": round(rng.gauss(centre if j < 2 else 0.0, 1.0), 4) for j in range(4)},
                "label": ["low", "high"][label],
            }
        )
    return rows


@pytest.fixture(scope="module")
def tabular_checkpoint(tmp_path_factory):
    import torch

    from tests.toy_tabular import TabularConfig, TabularForClassification

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tabular_ckpt")
    TabularForClassification(TabularConfig(num_labels=3)).save_pretrained(
        path
    )  # a "pretrained" body
    return str(path)


def test_builtins_declare_every_table_once():
    for name in BUILTIN:
        modality = get_modality(name)
        assert isinstance(modality, Modality) and modality.name == name
        assert modality.task == f"{name}-classification"
        assert set(modality.default_learning_rates) >= {"frozen", "full", "llrd"}
        assert modality.augment_module == f"tl_hf.augment.{name}"
        assert modality.default_dataset.startswith("embedded:")
    with pytest.raises(
        UserError, match="unknown modality 'video': choose one of audio, image, text"
    ):
        get_modality("video")


def test_toy_modality_from_outside_trains_end_to_end(tabular_checkpoint, tmp_path):
    from transformers import AutoModelForSequenceClassification

    import tests.toy_tabular  # noqa: F401  (registers the modality)
    from tl_hf.cli.recipe import main

    assert "tabular" in modality_names()
    data = write_csv(tmp_path / "rows.csv", tabular_rows(120))
    out = tmp_path / "out"
    code = main(
        "tabular",
        [
            "--model_name_or_path",
            tabular_checkpoint,
            "--train_file",
            data,
            "--output_dir",
            str(out),
            "--strategy",
            "llrd",
            "--num_train_epochs",
            "8",
            "--test_split_percentage",
            "20",
            "--per_device_train_batch_size",
            "8",
            "--use_cpu",
        ],
    )
    assert code == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["test_accuracy"] >= 0.9, results  # two separable Gaussian blobs
    groups = json.loads((out / "param_groups.json").read_text())
    assert {g["depth"] for g in groups} == {0, 1, 2, 3}  # the toy family's depth table is used
    run_config = (out / "run_config.yaml").read_text()
    assert "modality: tabular" in run_config
    assert "tabular-classification" in (out / "README.md").read_text()
    # the saved best model reloads through the auto class, with the new label names
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "high", 1: "low"}


def test_toy_modality_recipe_file_runs_and_reports_bad_input_in_one_line(
    tabular_checkpoint, tmp_path
):
    recipe = tmp_path / "tabular_classify.py"
    recipe.write_text(
        "import sys\nimport tests.toy_tabular\nfrom tl_hf.recipe import main\n"
        "sys.exit(main('tabular'))\n"
    )
    text_only = write_csv(
        tmp_path / "words.csv",
        [{"word": w, "label": "ab"[i % 2]} for i, w in enumerate(["x", "y", "z", "w"] * 5)],
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(recipe),
            "--model_name_or_path",
            tabular_checkpoint,
            "--train_file",
            text_only,
            "--output_dir",
            str(tmp_path / "never"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "error: no numeric feature columns; columns are: word, label"
    ]
    assert not (tmp_path / "never").exists()
