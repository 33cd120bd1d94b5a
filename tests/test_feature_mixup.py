"""Feature-space mixup for heads on frozen features (`--augment feature_mixup`, issue 26): the
stored backbone output of a training batch is mixed with soft labels, the inputs never; the
recipe trains a frozen head through the tight loop with it (features cached once); a strategy
without stored features, or on-the-fly augmentation beside it, is one line before anything
loads; audio's waveform mixup shares the same mixing."""

import json

import numpy as np
import pytest
import torch
from conftest import sentiment_rows, write_csv

from tl_hf.augment.base import AugmentSpec, FeatureMixup, mix_rows
from tl_hf.errors import UserError

PREFIX = "tl_hf_feature_"


def _batch(n=6, width=4):
    torch.manual_seed(0)
    return {
        f"{PREFIX}last_hidden_state": torch.randn(n, 1, width),
        f"{PREFIX}lengths": torch.arange(n),  # an integer column is never mixed
        "labels": torch.tensor([0, 1, 2, 0, 1, 2][:n]),
    }


def test_stored_features_and_labels_are_mixed_with_one_lambda_and_permutation():
    batch = _batch()
    spec = AugmentSpec("feature_mixup", {"alpha": 0.4, "p": 1.0})
    out = FeatureMixup(spec, num_labels=3, seed=5, prefix=PREFIX)(dict(batch))
    soft = out["labels"]
    assert soft.shape == (6, 3) and torch.allclose(soft.sum(-1), torch.ones(6))
    assert torch.equal(out[f"{PREFIX}lengths"], batch[f"{PREFIX}lengths"])
    # replay the draws: the same lam and permutation explain both the features and the labels
    rng = np.random.default_rng(5)
    rng.random()  # the p draw
    lam = float(rng.beta(0.4, 0.4))
    perm = torch.from_numpy(rng.permutation(6))
    x = batch[f"{PREFIX}last_hidden_state"]
    assert torch.allclose(out[f"{PREFIX}last_hidden_state"], lam * x + (1 - lam) * x[perm])
    onehot = torch.nn.functional.one_hot(batch["labels"], 3).float()
    assert torch.allclose(soft, lam * onehot + (1 - lam) * onehot[perm])
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(6))


def test_the_same_seed_draws_the_same_mix_and_a_batch_without_features_passes():
    spec = AugmentSpec("feature_mixup", {"alpha": 0.4, "p": 1.0})
    a = FeatureMixup(spec, 3, seed=1, prefix=PREFIX)(_batch())
    b = FeatureMixup(spec, 3, seed=1, prefix=PREFIX)(_batch())
    c = FeatureMixup(spec, 3, seed=2, prefix=PREFIX)(_batch())
    key = f"{PREFIX}last_hidden_state"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
    raw = {"input_ids": torch.ones(4, 3, dtype=torch.long), "labels": torch.tensor([0, 1, 0, 1])}
    assert FeatureMixup(spec, 2, seed=1, prefix=PREFIX)(raw) is raw  # the backbone runs: no mix
    never = AugmentSpec("feature_mixup", {"alpha": 0.4, "p": 0.0})
    assert FeatureMixup(never, 3, seed=1, prefix=PREFIX)(_batch())["labels"].dim() == 1


def test_waveform_mixup_mixes_the_clips_and_keeps_both_masks():
    from tl_hf.augment.audio import WaveformMixup

    spec = AugmentSpec("mixup", {"alpha": 0.4, "p": 1.0})
    batch = {
        "input_values": torch.randn(4, 10),
        "attention_mask": torch.tensor([[1] * 10, [1] * 5 + [0] * 5, [1] * 3 + [0] * 7, [1] * 10]),
        "labels": torch.tensor([0, 1, 1, 0]),
    }
    out = WaveformMixup([spec], 2, seed=3)(dict(batch))
    rng = np.random.default_rng(3)
    rng.random()
    lam = float(rng.beta(0.4, 0.4))
    perm = torch.from_numpy(rng.permutation(4))
    x, mask = batch["input_values"], batch["attention_mask"]
    assert torch.allclose(out["input_values"], lam * x + (1 - lam) * x[perm])
    assert torch.equal(out["attention_mask"], torch.maximum(mask, mask[perm]))
    direct = mix_rows(batch, ["input_values"], 2, 0.4, np.random.default_rng(9))
    assert direct["labels"].shape == (4, 2)


def _recipe(tmp_path, tiny_bert, *flags):
    from tl_hf.cli.recipe import main

    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = write_csv(tmp_path / "train.csv", sentiment_rows(48))
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path", tiny_bert, "--train_file", csv, "--output_dir", str(out),
        "--use_cpu", "--num_train_epochs", "3", "--report_to", "none", "--seed", "3", *flags,
    ]  # fmt: skip
    return main("text", argv), out


def test_a_frozen_head_trains_on_mixed_stored_features(tiny_bert, tmp_path, capsys):
    code, out = _recipe(
        tmp_path / "mix", tiny_bert, "--strategy", "frozen", "--augment", "feature_mixup"
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "augmentation: feature_mixup:alpha=0.4,p=1.0 (on the stored features" in printed
    mixed = json.loads((out / "all_results.json").read_text())
    code, plain_out = _recipe(tmp_path / "plain", tiny_bert, "--strategy", "frozen")
    assert code == 0
    plain = json.loads((plain_out / "all_results.json").read_text())
    # same seed, same data, same stored features: only the mixing differs
    assert mixed["train_loss"] != pytest.approx(plain["train_loss"], abs=1e-6)
    assert mixed["train_samples"] == plain["train_samples"]  # no stored copies were added


@pytest.mark.parametrize(
    "flags",
    [
        {"strategy": "full", "augment": ["feature_mixup"]},
        {"strategy": "frozen", "augment": ["feature_mixup"], "cache_features": False},
        {"strategy": "frozen", "augment": ["feature_mixup", "swap"], "augment_mode": "on_the_fly"},
        {"strategy": "frozen", "augment": ["feature_mixup:alpha=-1"]},
    ],
)
def test_feature_mixup_without_stored_features_is_refused(tiny_bert, flags):
    from tl_hf.config import build_args
    from tl_hf.pipeline import plan_run

    with pytest.raises(UserError) as err:
        plan_run(build_args("text", None, model_name_or_path=tiny_bert, **flags))
    message = str(err.value)
    assert "feature_mixup" in message and "\n" not in message
