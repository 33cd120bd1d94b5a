"""The strategy extension point: every strategy trains only what it declares; LoRA's merged
model and adapter reproduce the trained model; LP-FT fine-tunes from the probed head; gradual
unfreezing switches groups on at the right epochs; a strategy declared outside `tl_hf`
(tests/toy_strategy.py) trains end to end through the recipe."""

import json

import pytest
import torch
from conftest import sentiment_rows, write_csv

from tl_hf.config import build_args
from tl_hf.errors import UserError
from tl_hf.strategy import (
    StrategyContext,
    apply_strategy,
    get_strategy,
    parameter_depths,
    strategy_names,
    strategy_settings,
)

RATES = {"frozen": 1e-2, "full": 5e-5, "llrd": 1e-4}  # the text modality's table


@pytest.fixture
def csv_file(tmp_path):
    return write_csv(tmp_path / "data.csv", sentiment_rows(60))


def _load(path):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)


def _batches(n=24):
    from conftest import FILLER, NEGATIVE, POSITIVE
    from datasets import Dataset
    from transformers import AutoTokenizer

    return Dataset.from_list(
        [
            {"text": " ".join([(POSITIVE, NEGATIVE)[i % 2][i % 5], *FILLER[:3]]), "label": i % 2}
            for i in range(n)
        ]
    ), AutoTokenizer


def _tokenized(path, n=24):
    data, auto = _batches(n)
    tokenizer = auto.from_pretrained(path)
    data = data.map(lambda b: tokenizer(b["text"]), batched=True).remove_columns("text")
    return data.rename_column("label", "labels"), tokenizer


def _trainer(model, path, tmp_path, name, options, **extra):
    import transformers as tf

    from tl_hf.training.trainer import TLTrainer

    data, tokenizer = _tokenized(path)
    args = tf.TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        use_cpu=True,
        report_to="none",
        learning_rate=1e-2,
        weight_decay=0.01,
        per_device_train_batch_size=8,
        save_strategy="no",
        **extra,
    )
    return TLTrainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=tf.DataCollatorWithPadding(tokenizer),
        strategy=name,
        options=options,
        callbacks=get_strategy(name).callbacks(options),
    )


def test_registered_names_validate_the_flag_and_set_default_rates():
    import tests.toy_strategy  # noqa: F401

    assert {"frozen", "full", "llrd", "lora", "lp_ft", "gradual", "bitfit"} <= set(strategy_names())
    with pytest.raises(UserError, match="invalid choice: 'partial'.*bitfit.*gradual.*lora.*lp_ft"):
        build_args("text", strategy="partial")
    lr = {s: build_args("text", strategy=s).training.learning_rate for s in strategy_names()}
    assert (
        lr["frozen"] == 1e-2 and lr["full"] == 5e-5 and lr["llrd"] == 1e-4
    )  # frozen: 1e-2 (issue 12)
    assert lr["lora"] == pytest.approx(2e-3)  # 40x the modality's full rate
    assert lr["gradual"] == lr["lp_ft"] == 1e-4  # layerwise rates; lp_ft then llrd
    assert build_args("text", strategy="lp_ft", lp_ft_then="full").training.learning_rate == 5e-5
    assert lr["bitfit"] == pytest.approx(5e-4)  # the toy's own default


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"strategy": "lora", "lora_r": 0}, "--lora_r must be >= 1"),
        ({"strategy": "lp_ft", "lp_ft_then": "frozen"}, "--lp_ft_then must be one of full, llrd"),
        ({"strategy": "lp_ft", "lp_ft_probe_epochs": 0}, "--lp_ft_probe_epochs must be >= 1"),
        ({"strategy": "gradual", "unfreeze_every": 0}, "--unfreeze_every must be >= 1"),
        ({"strategy": "lora", "trainable_layers": 1}, "--trainable_layers only applies"),
        ({"strategy": "lp_ft", "random_init": True}, "--random_init with --strategy lp_ft"),
        ({"strategy": "lora", "random_init": True}, "--random_init with --strategy lora"),
    ],
)
def test_bad_strategy_flags_are_user_errors(flags, message):
    with pytest.raises(UserError, match=message):
        build_args("text", **flags)


def _no_phase(model, name, epochs, learning_rate):
    apply_strategy(model, name)
    return {"train": [], "eval": [], "learning_rates": []}


@pytest.mark.parametrize("name", ["frozen", "full", "llrd", "lora", "lp_ft", "gradual", "bitfit"])
def test_each_strategy_trains_only_what_it_declares(name, tiny_bert, tmp_path):
    import tests.toy_strategy  # noqa: F401

    model = _load(tiny_bert)
    strategy = get_strategy(name)
    options = strategy_settings(name, llrd_decay=0.5)
    strategy.prepare_model(model, StrategyContext(options, RATES, lambda m: None, _no_phase))
    declared = apply_strategy(model, name, options=options)
    params = dict(model.named_parameters())
    assert declared and declared < set(params) or name in ("full", "llrd", "lp_ft", "gradual")
    # gradients: exactly the declared parameters get one
    data, tokenizer = _tokenized(tiny_bert, 8)
    batch = tokenizer.pad(data[:8], return_tensors="pt")
    model(**batch).loss.backward()
    assert {n for n, p in params.items() if p.grad is not None} == declared
    model.zero_grad(set_to_none=True)
    # optimizer state and updates: exactly the parameters training now (for gradual, the top
    # depth in its first epoch: 3 steps of 8 rows = one epoch)
    if name == "gradual":
        top = max(parameter_depths(model).values())
        declared = {n for n, d in parameter_depths(model).items() if d == top}
    before = {n: p.detach().clone() for n, p in params.items()}
    trainer = _trainer(model, tiny_bert, tmp_path, name, options, max_steps=3)
    trainer.train()
    with_state = {id(p) for p, s in trainer.optimizer.state.items() if s}
    assert with_state == {id(params[n]) for n in declared}
    changed = {n for n, p in params.items() if not torch.equal(p.detach(), before[n])}
    assert changed == declared


def test_lora_merged_and_adapter_on_base_give_the_trained_logits(tiny_bert, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    model = _load(tiny_bert)
    lora = get_strategy("lora")
    options = strategy_settings("lora", lora_r=4, lora_alpha=8, lora_dropout=0.1)
    lora.prepare_model(model, StrategyContext(options, RATES, lambda m: None))
    apply_strategy(model, "lora", options=options)
    trainer = _trainer(model, tiny_bert, tmp_path, "lora", options, max_steps=6)
    trainer.train()
    data, tokenizer = _tokenized(tiny_bert, 8)
    batch = tokenizer.pad(data[:8], return_tensors="pt")
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
        base_logits = _load(tiny_bert).eval()(**batch).logits
    assert (trained - base_logits).abs().max() > 1e-3  # the adapters and the head learned
    out = tmp_path / "saved"
    lora.save(trainer, options, str(out))
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert not any(
        "lora" in k or "modules_to_save" in k for k in load_file(out / "model.safetensors")
    )
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    adapter = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, trained, atol=1e-5)
        assert torch.allclose(adapter(**batch).logits, trained, atol=1e-5)


def test_lora_run_leaves_merged_model_adapter_and_card(tiny_bert, csv_file, tmp_path):
    from transformers import pipeline

    import tl_hf

    out = tmp_path / "run"
    result = tl_hf.train_text_classifier(
        model_name_or_path=tiny_bert,
        train_file=csv_file,
        output_dir=str(out),
        strategy="lora",
        lora_r=2,
        num_train_epochs=2,
        per_device_train_batch_size=8,
        test_split_percentage=20,
        use_cpu=True,
    )
    assert result.metrics["strategy"] == "lora"
    groups = json.loads((out / "param_groups.json").read_text())
    assert sum(g["num_params"] for g in groups) < 0.2 * sum(
        p.numel() for p in result.model.parameters()
    )
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (
        not (out / ".tl_hf_model.tmp").exists()
        and not (out / "adapter" / ".tl_hf_model.tmp").exists()
    )
    # the returned model is the merged one that was saved: a plain transformers model
    assert not any(
        "lora_" in n or "modules_to_save" in n for n, _ in result.model.named_parameters()
    )
    card = (out / "README.md").read_text()
    assert "LoRA r 2" in card and "PeftModel.from_pretrained" in card and "adapter" in card
    classifier = pipeline("text-classification", model=str(out), device="cpu")
    assert classifier("good great")[0]["label"] in {"pos", "neg"}


def test_lp_ft_fine_tunes_from_the_probed_head(tiny_bert, csv_file, tmp_path, monkeypatch):
    import tl_hf
    import tl_hf.model.checkpoint
    from tl_hf.training.trainer import TLTrainer

    calls, built = [], []
    original, build_model = TLTrainer.train, tl_hf.model.checkpoint.build_model

    def building(*args, **kwargs):
        model = build_model(*args, **kwargs)
        # held from the start: during the probe, model.bert is the replayed feature cache
        built.append((model, model.bert.embeddings.word_embeddings.weight))
        return model

    monkeypatch.setattr(tl_hf.model.checkpoint, "build_model", building)

    def recording_train(self, *args, **kwargs):
        model, word_embeddings = built[0]
        head = lambda: model.classifier.weight.detach().clone()  # noqa: E731
        word = lambda: word_embeddings.detach().clone()  # noqa: E731
        start = (head(), word())
        result = original(self, *args, **kwargs)
        calls.append({"strategy": self.strategy.name, "start": start, "end": (head(), word())})
        return result

    monkeypatch.setattr(TLTrainer, "train", recording_train)
    out = tmp_path / "run"
    tl_hf.train_text_classifier(
        model_name_or_path=tiny_bert,
        train_file=csv_file,
        output_dir=str(out),
        strategy="lp_ft",
        lp_ft_probe_epochs=2,
        num_train_epochs=2,
        per_device_train_batch_size=8,
        use_cpu=True,
    )
    probe, tune = calls
    assert probe["strategy"] == "frozen" and tune["strategy"] == "lp_ft"
    assert not torch.equal(probe["start"][0], probe["end"][0])  # the probe trained the head
    assert torch.equal(probe["start"][1], probe["end"][1])  # ... and nothing of the backbone
    assert torch.equal(tune["start"][0], probe["end"][0])  # phase 2 starts from the probed head
    assert not torch.equal(tune["start"][1], tune["end"][1])  # ... and fine-tunes the backbone
    history = json.loads((out / "training_history.json").read_text())
    (phase,) = history["phases"]
    assert phase["name"] == "linear probe" and [e["epoch"] for e in phase["eval"]] == [1, 2]
    assert [round(e["epoch"]) for e in history["eval"]] == [1, 2]  # epochs count phase 2
    lrs = {g["depth"]: g["lr"] for g in json.loads((out / "param_groups.json").read_text())}
    assert lrs[0] < lrs[1] < lrs[2] < lrs[3]  # llrd groups (the default --lp_ft_then)
    assert "linear probe for 2 epoch(s)" in (out / "README.md").read_text()


def test_gradual_unfreezing_switches_groups_on_at_the_right_epochs(tiny_bert, tmp_path):
    from transformers import TrainerCallback

    from tl_hf.report import MonitorCallback

    model = _load(tiny_bert)
    options = strategy_settings("gradual", unfreeze_every=1, llrd_decay=0.5)
    apply_strategy(model, "gradual", options=options)
    depths = parameter_depths(model)  # 2 blocks: depths 0..3
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})

    trainer = _trainer(model, tiny_bert, tmp_path, "gradual", options, num_train_epochs=4)
    monitor = MonitorCallback(tmp_path / "monitor", plot=False)
    trainer.add_callback(Snapshot())
    trainer.add_callback(monitor)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    trained_depths = []
    for before, after in zip([start, *snapshots], snapshots, strict=False):
        trained_depths.append(
            sorted({depths[n] for n in after if not torch.equal(after[n], before[n])})
        )
    assert trained_depths == [[3], [2, 3], [1, 2, 3], [0, 1, 2, 3]]
    # the learning-rate panel: depth d's group is 0 until its epoch, then its llrd rate
    for record in monitor.history["learning_rates"]:
        if record["step"] == trainer.state.max_steps:
            continue  # the linear schedule ends at 0 for every group
        for depth in range(4):
            lr = record["lr"][f"depth_{depth:02d}"]
            assert (lr > 0) == (record["epoch"] >= 3 - depth - 1e-6), (record, depth)


def test_toy_strategy_from_outside_runs_end_to_end(tiny_bert, csv_file, tmp_path):
    from safetensors.torch import load_file

    import tests.toy_strategy  # noqa: F401  (registers the strategy)
    from tl_hf.cli.recipe import main

    out = tmp_path / "out"
    code = main(
        "text",
        [
            "--model_name_or_path",
            tiny_bert,
            "--train_file",
            csv_file,
            "--output_dir",
            str(out),
            "--strategy",
            "bitfit",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--use_cpu",
        ],
    )
    assert code == 0
    base, tuned = load_file(f"{tiny_bert}/model.safetensors"), load_file(out / "model.safetensors")
    shared = set(base) & set(tuned)
    changed = {k for k in shared if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.endswith(".bias") or k.startswith("classifier.") for k in changed)
    assert any(k.endswith(".bias") and k.startswith("bert.") for k in changed)
    groups = json.loads((out / "param_groups.json").read_text())
    biases = sum(v.numel() for k, v in tuned.items() if k.endswith(".bias"))
    assert sum(g["num_params"] for g in groups) == biases + tuned["classifier.weight"].numel()
    # the card describes the strategy in its own words (description and describe)
    assert (
        "Strategy `bitfit`: Only the biases and the new head train (biases and head only)."
        in (out / "README.md").read_text()
    )
    assert "strategy: bitfit" in (out / "run_config.yaml").read_text()


def _family_builders():
    import test_strategy_audio as audio
    import test_strategy_text as text
    import test_strategy_vision as vision

    return {
        "distilbert": lambda: text.tiny("distilbert"),
        "roberta": lambda: text.tiny("roberta"),
        "vit": vision._vit,
        "convnext": vision._convnext,  # no regex of its own: the generic in-block search
        "timm": vision._timm,
        "wav2vec2": audio._wav2vec2,
        "whisper": audio._whisper,
        "ast": audio._ast,
    }


@pytest.mark.parametrize(
    "family", ["distilbert", "roberta", "vit", "convnext", "timm", "wav2vec2", "whisper", "ast"]
)
def test_lora_adapts_the_blocks_of_every_modality_and_merges_back(family):
    import copy

    if family == "timm":
        pytest.importorskip("timm")
    from tl_hf.strategies.lora import adapter_state_dict, merge_lora, merged_state_dict

    model = _family_builders()[family]()
    base_keys = set(model.state_dict())
    options = strategy_settings("lora", lora_r=2)
    get_strategy("lora").prepare_model(model, StrategyContext(options, RATES, lambda m: None))
    trainable = apply_strategy(model, "lora", options=options)
    depths = parameter_depths(model)  # every parameter, adapters included, is placed
    top = max(depths.values())
    adapters = {n for n in trainable if ".lora_" in n}
    assert adapters and all(1 <= depths[n] < top for n in adapters)  # inside the blocks only
    assert all(depths[n] == top for n in trainable - adapters)  # the rest: the head
    for module in model.modules():  # frozen BatchNorm keeps its running statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert not module.training
    with torch.no_grad():  # B starts at zero: give every adapter a delta to merge
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_()
    merged = merge_lora(copy.deepcopy(model)).state_dict()
    assert set(merged) == base_keys  # a plain model of the checkpoint's layout
    # the same weights computed from a state dict alone (what an FSDP/DeepSpeed gather gives)
    from_state = merged_state_dict(model, model.state_dict())
    assert set(from_state) == base_keys
    differ = [k for k in base_keys if not torch.allclose(from_state[k], merged[k], atol=1e-6)]
    assert not differ
    # the adapter picked from a state dict is peft's own selection, tensor for tensor
    from peft import get_peft_model_state_dict

    ours, peft_own = adapter_state_dict(model, model.state_dict()), get_peft_model_state_dict(model)
    assert set(ours) == set(peft_own) and all(torch.equal(ours[k], peft_own[k]) for k in ours)
    adapted = model.state_dict()  # the merge changed the adapted layers' base weights
    base_layers = {k.replace(".base_layer.", "."): k for k in adapted if ".base_layer." in k}
    assert any(not torch.equal(merged[k], adapted[v]) for k, v in base_layers.items())


def test_lora_target_modules_override(tiny_bert):
    def adapted(targets):
        model = _load(tiny_bert)
        options = strategy_settings("lora", lora_target_modules=targets)
        get_strategy("lora").prepare_model(model, StrategyContext(options, RATES, lambda m: None))
        return sorted(n.rsplit(".", 1)[0] for n, _ in model.named_modules() if n.endswith("lora_A"))

    assert adapted(None)[0].endswith("layer.0.attention.output.dense")  # default: 6 per block
    assert len(adapted(None)) == 12
    assert [n.rsplit(".", 1)[1] for n in adapted(["query", "value"])] == ["query", "value"] * 2
    assert len(adapted([r"bert\.encoder\.layer\.1\..*query"])) == 1  # one regex
    with pytest.raises(UserError, match="matched no module"):
        adapted(["no_such_layer"])


def test_batchnorm_frozen_for_a_probe_trains_again_when_unfrozen():
    import test_strategy_vision as vision

    model = vision._resnet()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    pixels = torch.randn(2, model.config.num_channels, 32, 32)

    def stats_move():
        before = bn.running_mean.clone()
        model.train()
        model(pixel_values=pixels)
        return not torch.equal(before, bn.running_mean)

    apply_strategy(model, "frozen")  # LP-FT's probe
    assert not stats_move()
    apply_strategy(model, "full")  # its fine-tuning phase
    assert stats_move()


def test_each_modality_declares_its_default_strategy():
    # docs/defaults.md: text lp_ft (probe on the declared pooling, then LLRD), image/audio llrd
    assert build_args("text").strategy.strategy == "lp_ft"
    assert build_args("image").strategy.strategy == "llrd"
    assert build_args("audio").strategy.strategy == "llrd"
    assert build_args("text", strategy="full").strategy.strategy == "full"  # a given flag wins
    # --random_init needs the backbone trained from the start: lp_ft would probe random features
    assert build_args("text", random_init=True).strategy.strategy == "llrd"
    # the default strategy's own default rate: LP-FT then LLRD at the text llrd rate
    assert build_args("text").training.learning_rate == 1e-4


def test_a_strategy_writes_its_own_card_sentence(monkeypatch):
    """`card_text` replaces the default sentence (description + details + rate) in the card,
    and reads the run's settings, results and learning rates by depth."""
    import tl_hf.strategies.base as strategy_module
    from tl_hf.report.card_sections import what_was_done
    from tl_hf.strategy import Strategy, register_strategy

    # registered for this test only
    registry = strategy_module.STRATEGIES
    monkeypatch.setattr(registry, "_records", dict(registry._records))

    seen = {}

    def card_text(settings, results, lr_by_depth):
        seen.update(settings=settings, results=results, rows=lr_by_depth)
        return f"Only the top {len(lr_by_depth)} depths moved, at {settings['learning_rate']}."

    register_strategy(Strategy(name="toy_card", description="a toy", card_text=card_text))
    groups = [{"depth": 0, "lr": 1e-5, "num_params": 7}, {"depth": 1, "lr": 1e-4, "num_params": 3}]
    cfg = {"strategy": "toy_card", "learning_rate": 1e-4}
    lines = what_was_done(cfg, {"strategy": "toy_card", "cached_features": False}, groups)
    assert lines[0] == "- Strategy `toy_card`: Only the top 2 depths moved, at 0.0001."
    assert (
        seen["rows"] == [(0, 1e-5, 7), (1, 1e-4, 3)] and seen["results"]["strategy"] == "toy_card"
    )
    # without card_text: the description and the rate
    register_strategy(Strategy(name="toy_plain", description="a plain toy"))
    plain = what_was_done({**cfg, "strategy": "toy_plain"}, {"strategy": "toy_plain"}, groups)
    assert plain[0] == "- Strategy `toy_plain`: A plain toy. Learning rate 0.0001."
