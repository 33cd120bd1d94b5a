"""Recipes under a real multi-process launcher on the CPU: `accelerate launch` with
accelerate_configs/cpu_2proc.yaml (gloo DDP, world size 2) against a plain one-process run.

Each recipe is one entry of RECIPES (a tiny model and data maker plus its flags): adding the
image or audio recipe is one line there. The runs go through tests/dist_driver.py, which
records per rank what was scored, which optimizer groups were built and which files were
written (test-only probes, no library hooks).
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import REPO, free_port, make_tiny_bert, once_per_session, sentiment_rows, write_csv

from tl_hf.cli.launch import accelerate_launch

pytestmark = pytest.mark.distributed

# accelerate's launcher as a module run (what `tl-hf launch` execs): the `accelerate` script
# first imports every subcommand, 5 s a launch; the recipe tests keep the script a user types
ACCELERATE_LAUNCH = accelerate_launch()
DRIVER = os.path.join(REPO, "tests", "dist_driver.py")
CPU_2PROC = os.path.join(REPO, "accelerate_configs", "cpu_2proc.yaml")

# 1-process vs 2-process results with the same global batch and seed. With dropout off the
# two runs see the same examples in the same global batches and take the same steps; what
# differs is the order of floating-point sums (gloo's all-reduce of the two half-batch
# gradients vs one backward over the whole batch): about 1e-7 relative per step, which a
# few dozen Adam steps grow to well under 1e-3 on the losses. Accuracies must match exactly.
LOSS_TOLERANCE = 1e-3


def text_setup(tmp: Path) -> list[str]:
    model = make_tiny_bert(tmp / "tiny_bert")
    config = json.loads((tmp / "tiny_bert" / "config.json").read_text())
    # no dropout: the ranks draw different dropout masks than the single process would
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (tmp / "tiny_bert" / "config.json").write_text(json.dumps(config))
    # 64 training rows: 8 full global batches per epoch (a short last batch would be padded
    # with repeated rows on one rank, a real difference from the single process); validation
    # 11 and test 13: odd sizes that 2 ranks cannot split evenly
    rows = sentiment_rows(88)
    return [
        "--model_name_or_path",
        model,
        "--train_file",
        write_csv(tmp / "train.csv", rows[:64]),
        "--validation_file",
        write_csv(tmp / "validation.csv", rows[64:75]),
        "--test_file",
        write_csv(tmp / "test.csv", rows[75:]),
    ]


def _media_csvs(tmp: Path, folder: Path, pattern: str) -> list[str]:
    """88 files of two classes, interleaved, split 64 / 11 / 13 into path,label CSVs."""
    files = {
        label: sorted((folder / label).glob(pattern))
        for label in sorted(p.name for p in folder.iterdir())
    }
    rows = [
        {"path": str(f), "label": label}
        for pair in zip(*files.values())
        for f, label in zip(pair, files)
    ]
    return [
        "--train_file",
        write_csv(tmp / "train.csv", rows[:64]),
        "--validation_file",
        write_csv(tmp / "validation.csv", rows[64:75]),
        "--test_file",
        write_csv(tmp / "test.csv", rows[75:88]),
    ]


def image_setup(tmp: Path) -> list[str]:
    """A tiny ViT (LayerNorm, no dropout: BatchNorm statistics would differ per rank)."""
    from test_recipe_image import make_image_folder
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    ViTForImageClassification(config).save_pretrained(tmp / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp / "vit")
    folder = make_image_folder(tmp / "images", per_class=44)
    return ["--model_name_or_path", str(tmp / "vit"), *_media_csvs(tmp, Path(folder), "*.png")]


def audio_setup(tmp: Path) -> list[str]:
    """A tiny wav2vec2 with dropout, layer drop and time masking off (random per rank)."""
    from conftest import tiny_wav2vec2_config
    from test_recipe_audio import make_audio_folder
    from transformers import (
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    config = tiny_wav2vec2_config(
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(tmp / "w2v")
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(
        tmp / "w2v"
    )
    folder = make_audio_folder(tmp / "clips", per_class=44)
    return [
        "--model_name_or_path",
        str(tmp / "w2v"),
        "--max_duration_seconds",
        "0.6",  # clips are shorter: no random crop, which would differ per rank
        *_media_csvs(tmp, Path(folder), "*.wav"),
    ]


# recipe name -> (setup making tiny model + data and returning their flags, split sizes)
SIZES = {"train": 64, "validation": 11, "test": 13}
RECIPES = {
    "text": (text_setup, SIZES),
    "image": (image_setup, SIZES),
    "audio": (audio_setup, SIZES),
}
COMMON = ["--num_train_epochs", "3", "--seed", "7", "--use_cpu", "--report_to", "none"]


def launch(
    modality: str, flags: list[str], out: Path, processes: int
) -> tuple[dict, dict[int, list[dict]], str]:
    probes = out.parent / f"{out.name}_probes"
    probes.mkdir()
    env = {
        **os.environ,
        "TL_HF_PROBE_DIR": str(probes),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    launcher = (
        [*ACCELERATE_LAUNCH, "--config_file", CPU_2PROC, "--main_process_port", str(free_port())]
        if processes == 2
        else [sys.executable]
    )
    batch = str(8 // processes)  # same global batch: 1 x 8 and 2 x 4
    cmd = [
        *launcher,
        DRIVER,
        modality,
        *flags,
        *COMMON,
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        batch,
        "--per_device_eval_batch_size",
        "4",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = {
        int(p.stem[4:]): [json.loads(line) for line in p.read_text().splitlines()]
        for p in probes.glob("rank*.jsonl")
    }
    return json.loads((out / "all_results.json").read_text()), rows, proc.stdout + proc.stderr


LLRD = ["--strategy", "llrd", "--learning_rate", "3e-3", "--llrd_decay", "0.8"]


def one_process_reference(tmp_path_factory, modality: str) -> tuple[Path, list[str], tuple]:
    """`modality`'s tiny model and data and their llrd run on one process, made once per
    session (conftest.once_per_session): the reference that the 2-process runs here, the
    DeepSpeed run (test_deepspeed_cpu) and the two-machine run (test_two_machines) compare
    with. Returns (their folder, the flags, what `launch` returned)."""
    setup, _ = RECIPES[modality]

    def make(folder: Path):
        flags = [*setup(folder), *LLRD]
        return folder, flags, launch(modality, flags, folder / "one", 1)

    return once_per_session(tmp_path_factory, f"{modality}_llrd_one_process", make)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per recipe: the llrd run on 1 process and on 2 processes."""
    results = {}
    # text last: test_deepspeed_cpu, which xdist starts beside this module, makes its
    # reference meanwhile
    for modality in sorted(RECIPES, key=lambda name: name == "text"):
        _, flags, one = one_process_reference(tmp_path_factory, modality)
        tmp = tmp_path_factory.mktemp(modality)
        results[modality] = (
            one,
            launch(modality, flags, tmp / "two", 2),
            tmp,
            RECIPES[modality][1],
        )
    return results


@pytest.mark.parametrize("modality", list(RECIPES))
def test_two_processes_match_one(runs, modality):
    (one, probes1, _), (two, probes2, _), _, sizes = runs[modality]
    assert sorted(probes2) == [0, 1], "both ranks must have run"
    optimizer = [r for r in probes2[0] if r["probe"] == "optimizer"]
    assert optimizer and optimizer[0]["world"] == 2
    assert [r["cls"] for r in probes2[0] if r["probe"] == "wrapped"] == ["DistributedDataParallel"]
    for key in ("eval_loss", "test_loss"):
        assert two[key] == pytest.approx(one[key], abs=LOSS_TOLERANCE), key
    # the training loss is a mean of per-step losses summed over the run: the rounding drift
    # of the per-rank halves accumulates over every step, not only the final weights'
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=10 * LOSS_TOLERANCE)
    for key in ("eval_accuracy", "test_accuracy", "eval_f1", "test_f1", "best_epoch"):
        assert two[key] == one[key], key
    # the optimizer took as many steps over the same global batches
    assert two["train_samples"] == one["train_samples"] == sizes["train"]


@pytest.mark.parametrize("modality", list(RECIPES))
def test_evaluation_counts_every_sample_once(runs, modality):
    _, (two, probes, _), tmp, sizes = runs[modality]
    assert two["eval_samples"] == sizes["validation"] and two["test_samples"] == sizes["test"]
    epochs = 3
    for rank in (0, 1):
        # every evaluation (one per epoch; the restored best model's is reused, not rerun:
        # tl_hf.pipeline.recorded_evaluation) and the test scored the gathered split: an odd
        # split over 2 ranks is padded by the sampler and the padding dropped again
        counts = [r["n"] for r in probes[rank] if r["probe"] == "metrics"]
        assert counts == [sizes["validation"]] * epochs + [sizes["test"]], (rank, counts)
    predictions = json.loads((tmp / "two" / "test_predictions.json").read_text())
    assert len(predictions["predictions"]) == len(predictions["labels"]) == sizes["test"]


@pytest.mark.parametrize("modality", list(RECIPES))
def test_outputs_written_once_by_the_main_process(runs, modality):
    (_, probes1, _), (_, probes2, log), tmp, _ = runs[modality]
    writes = Counter(r["file"] for r in probes2[0] if r["probe"] == "write")
    assert not [r for r in probes2[1] if r["probe"] == "write"], "rank 1 wrote output files"
    for name in (
        "all_results.json",
        "param_groups.json",
        "run_config.yaml",
        "test_predictions.json",
        "diagnosis.json",
        "README.md",
        "report.html",
    ):
        assert writes[name] == 1, (name, writes)
    # the same files as the one-process run, written as often; the curves are redrawn within
    # a time budget (report/monitor.py: draw_budget), so how often depends on the clock
    one = Counter(r["file"] for r in probes1[0] if r["probe"] == "write")
    curves = "training_curves.png"
    assert writes.pop(curves, 0) >= 1 and one.pop(curves, 0) >= 1
    assert writes == one
    history = json.loads((tmp / "two" / "training_history.json").read_text())
    steps = [e["step"] for e in history["eval"]]
    assert steps == sorted(set(steps)) and len(steps) == 3
    assert len({e["step"] for e in history["train"]}) == len(history["train"])
    assert log.count("[tl-hf] model saved to") == 1, "the summary must be printed by one rank"
    assert log.count("[tl-hf] data:") == 1


@pytest.mark.parametrize("modality", list(RECIPES))
def test_llrd_groups_intact_after_ddp_wrapping(runs, modality):
    _, (_, probes, _), tmp, _ = runs[modality]
    written = json.loads((tmp / "two" / "param_groups.json").read_text())
    built = [r for r in probes[0] if r["probe"] == "optimizer"][0]
    assert len({g["depth"] for g in written}) > 2
    assert sorted((g["lr"], g["weight_decay"], g["num_params"]) for g in written) == sorted(
        (g["lr"], g["weight_decay"], g["params"]) for g in built["groups"]
    )
    assert sum(g["params"] for g in built["groups"]) == built["trainable"]
    top = max(g["depth"] for g in written)
    for g in written:
        assert g["lr"] == pytest.approx(3e-3 * 0.8 ** (top - g["depth"]))


@pytest.mark.parametrize("modality", list(RECIPES))
def test_frozen_strategy_trains_under_ddp(modality, tmp_path):
    setup, sizes = RECIPES[modality]
    flags = [*setup(tmp_path), "--strategy", "frozen"]
    results, probes, log = launch(modality, flags, tmp_path / "frozen", 2)
    # neither DDP's error for trainable parameters without gradients nor its warning that
    # the search for them (find_unused_parameters) was wasted
    assert "Expected to have finished reduction" not in log and "unused parameters" not in log
    built = [r for r in probes[0] if r["probe"] == "optimizer"][0]
    # only the head trains: far fewer parameters than the model has, all in the optimizer
    assert 0 < built["trainable"] == sum(g["params"] for g in built["groups"])
    assert [r["cls"] for r in probes[0] if r["probe"] == "wrapped"] == ["DistributedDataParallel"]
    assert results["stopped_epoch"] == 3 and results["eval_samples"] == sizes["validation"]


@pytest.mark.parametrize(
    "strategy, extra",
    [
        ("lora", ["--lora_dropout", "0", "--learning_rate", "3e-3"]),
        ("lp_ft", ["--lp_ft_probe_epochs", "2", "--learning_rate", "3e-3"]),
        ("gradual", ["--unfreeze_every", "1", "--learning_rate", "3e-3"]),
    ],
)
def test_new_strategies_two_processes_match_one(strategy, extra, tmp_path):
    """LoRA (adapters injected before DDP wraps the model), LP-FT (a probe Trainer, then a
    second DDP wrapping) and gradual unfreezing (groups held back by gradient hooks, not
    requires_grad) train the same model on 2 ranks as on 1."""
    flags = [*text_setup(tmp_path), "--strategy", strategy, *extra]
    one, _, _ = launch("text", flags, tmp_path / "one", 1)
    two, probes, log = launch("text", flags, tmp_path / "two", 2)
    assert "Expected to have finished reduction" not in log
    assert [r["cls"] for r in probes[0] if r["probe"] == "wrapped"][-1] == "DistributedDataParallel"
    for key in ("eval_loss", "test_loss"):
        assert two[key] == pytest.approx(one[key], abs=LOSS_TOLERANCE), key
    for key in ("eval_accuracy", "test_accuracy", "best_epoch"):
        assert two[key] == one[key], key
    if strategy == "lora":
        assert (tmp_path / "two" / "adapter" / "adapter_config.json").is_file()
    if strategy == "lp_ft":
        history = json.loads((tmp_path / "two" / "training_history.json").read_text())
        assert len(history["phases"][0]["eval"]) == 2


def test_lora_under_fsdp_trains_its_declared_parameters_and_saves_whole(tmp_path):
    """LoRA under torch FSDP1 (full shard, use_orig_params, one unit per block; 2 gloo ranks
    through torchrun): the optimizer groups hold exactly the declared parameters although
    their names carry FSDP's prefixes and frozen and trainable weights share a unit; only they
    get gradients; and the adapter and merged model written from the gathered state dict give
    the sharded model's logits (tests/fsdp_lora_driver.py says why not through Accelerate)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)  # a random tiny BERT that 8 steps move off chance (not every draw does)
    model_dir = make_tiny_bert(tmp_path / "tiny_bert")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    driver = os.path.join(REPO, "tests", "fsdp_lora_driver.py")
    out = tmp_path / "out"
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", driver, model_dir, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["wrapped_units"] == 3  # the root and one unit per block: mixed units
    lora = [n for n in result["declared"] if ".lora_" in n]
    assert len(lora) == 24 and all("_fsdp_wrapped_module" not in n for n in lora)
    assert result["in_groups"] == result["declared"]
    assert result["with_grad"] == result["declared"]
    assert result["losses"][-1] < result["losses"][0]  # it learned
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(
        [r["sentence"] for r in sentiment_rows(32)], padding=True, return_tensors="pt"
    )
    trained = torch.tensor(result["logits"])
    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged").eval()
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    adapter = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, trained, atol=1e-5)
        assert torch.allclose(adapter(**batch).logits, trained, atol=1e-5)
