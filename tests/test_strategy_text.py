"""Strategies on tiny text models: depth mapping per family, LLRD learning rates, freezing,
and the optimizer the Trainer subclass builds."""

import math

import pytest
import torch
import transformers as tf

from tl_hf.errors import UserError
from tl_hf.strategy import (
    apply_strategy,
    build_param_groups,
    head_parameter_names,
    num_blocks,
    parameter_depths,
)

SMALL = dict(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    num_labels=3,
)
FAMILIES = {
    "bert": (tf.BertConfig, {}),
    "roberta": (tf.RobertaConfig, {}),
    "xlm-roberta": (tf.XLMRobertaConfig, {}),
    "distilbert": (tf.DistilBertConfig, dict(dim=16, n_layers=3, n_heads=2, hidden_dim=32)),
    "electra": (tf.ElectraConfig, dict(embedding_size=8)),
    "deberta-v2": (
        tf.DebertaV2Config,
        dict(relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"]),
    ),
    "albert": (tf.AlbertConfig, dict(embedding_size=8, num_hidden_groups=1)),
    "mpnet": (tf.MPNetConfig, {}),
}


def tiny(family):
    config_cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    return tf.AutoModelForSequenceClassification.from_config(config_cls(**SMALL, **extra))


def block_of(name):
    """The block index in a name (layer.3. / layers.3. / albert_layer_groups.0.), else None."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layer", "layers") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_parameter_placed_in_order(family):
    model = tiny(family)
    depths = parameter_depths(model)
    L = num_blocks(model)
    assert L == 3
    assert set(depths) == {n for n, _ in model.named_parameters()}
    heads = head_parameter_names(model)
    assert heads and all(depths[n] == L + 1 for n in heads)
    assert any(n.startswith("classifier") for n in heads)
    # built from a config, nothing was loaded: the head is exactly what lies outside the base model
    assert heads == {n for n in depths if not n.startswith(model.base_model_prefix + ".")}
    for name, depth in depths.items():
        if ".embeddings." in f".{name}" or "word_embeddings" in name:
            assert depth == 0, name
        block = block_of(name)
        if block is not None and family != "albert":
            assert depth == block + 1, name


def test_albert_shared_group_sits_at_the_top_block():
    model = tiny("albert")
    depths = parameter_depths(model)
    shared = [d for n, d in depths.items() if "albert_layer_groups.0." in n]
    assert shared and set(shared) == {3}


@pytest.mark.parametrize("family", ["bert", "distilbert", "deberta-v2"])
@pytest.mark.parametrize("decay", [0.5, 0.8, 1.0])
def test_llrd_group_learning_rates_exact(family, decay):
    model = tiny(family)
    lr = 3e-4
    groups = build_param_groups(model, "llrd", lr, 0.01, decay)
    L = num_blocks(model)
    assert {g["depth"] for g in groups} == set(range(0, L + 2))
    for g in groups:
        assert g["lr"] == lr * decay ** (L + 1 - g["depth"])
    # the head trains at the full rate, the embeddings at lr * decay ** (L + 1)
    assert max(g["lr"] for g in groups) == lr
    assert math.isclose(min(g["lr"] for g in groups), lr * decay ** (L + 1))
    # every trainable parameter is in exactly one group
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups)) == len(list(model.parameters()))


def test_no_weight_decay_on_biases_and_norms():
    model = tiny("bert")
    groups = build_param_groups(model, "full", 1e-4, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            is_exempt = name.endswith("bias") or "LayerNorm" in name
            assert (g["weight_decay"] == 0.0) == is_exempt, name
    assert all(g["lr"] == 1e-4 for g in groups)


def test_frozen_trains_only_the_head():
    model = tiny("bert")
    trainable = apply_strategy(model, "frozen")
    assert trainable == {"classifier.weight", "classifier.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    groups = build_param_groups(model, "frozen", 1e-3, 0.0)
    assert sum(len(g["params"]) for g in groups) == 2


def test_frozen_with_top_layers():
    model = tiny("bert")
    trainable = apply_strategy(model, "frozen", trainable_layers=1)
    assert any(".layer.2." in n for n in trainable)
    assert not any(".layer.1." in n or "embeddings" in n for n in trainable)
    assert any("pooler" in n for n in trainable)  # above the top block
    with pytest.raises(UserError, match="exceeds the 3 blocks"):
        apply_strategy(tiny("bert"), "frozen", trainable_layers=4)


def test_new_pooler_from_loading_info_counts_as_head(tmp_path):
    """A checkpoint without a pooler: the freshly initialised pooler is head, not backbone."""
    from tl_hf.config import ModelArguments
    from tl_hf.model.checkpoint import build_model

    base = tf.BertModel(
        tf.BertConfig(**{k: v for k, v in SMALL.items() if k != "num_labels"}),
        add_pooling_layer=False,
    )
    base.save_pretrained(tmp_path)
    model = build_model(
        "AutoModelForSequenceClassification", str(tmp_path), ModelArguments(), ["a", "b"]
    )
    heads = head_parameter_names(model)
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight"} <= heads
    assert not any("encoder" in n for n in heads)
    assert model.config.id2label == {0: "a", 1: "b"}


def test_unknown_family_fails_loudly_naming_the_class():
    model = tf.AutoModelForSequenceClassification.from_config(
        tf.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=64, n_positions=32, num_labels=2)
    )
    with pytest.raises(UserError, match="GPT2ForSequenceClassification.*model_type 'gpt2'"):
        parameter_depths(model)


def test_unplaced_parameter_fails_loudly():
    model = tiny("bert")
    model.bert.register_parameter("mystery", torch.nn.Parameter(torch.zeros(2)))
    with pytest.raises(UserError, match="cannot place 1 parameter.*bert.mystery"):
        parameter_depths(model)


def test_trainer_optimizer_holds_exactly_trainable_parameters(tmp_path):
    from datasets import Dataset

    from tl_hf.training.trainer import TLTrainer

    model = tiny("bert")
    apply_strategy(model, "frozen")
    data = Dataset.from_dict({"input_ids": [[2, 5, 6, 3]] * 8, "labels": [0, 1] * 4})
    args = tf.TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        learning_rate=1e-3,
        weight_decay=0.1,
    )
    trainer = TLTrainer(model=model, args=args, train_dataset=data, strategy="frozen")
    optimizer = trainer.create_optimizer()
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert held == {id(model.classifier.weight), id(model.classifier.bias)}
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert (
        by_name["depth_04"]["weight_decay"] == 0.1
        and by_name["depth_04_no_decay"]["weight_decay"] == 0.0
    )


def test_random_init_baseline_ignores_pretrained_weights(tiny_bert, tmp_path):
    from tl_hf.config import ModelArguments, build_args
    from tl_hf.model.checkpoint import build_model, load_checkpoint_config

    # a checkpoint whose weights no initialiser draws (the tiny model's own random weights
    # could be drawn again from a reseeded generator)
    marked = tmp_path / "marked"
    pretrained = build_model(
        "AutoModelForSequenceClassification", tiny_bert, ModelArguments(), ["a", "b"]
    )
    with torch.no_grad():
        pretrained.bert.embeddings.word_embeddings.weight.fill_(0.125)
    pretrained.save_pretrained(marked)
    args = ModelArguments(random_init=True)
    loaded = build_model(
        "AutoModelForSequenceClassification", str(marked), ModelArguments(), ["a", "b"]
    )
    scratch = build_model(
        "AutoModelForSequenceClassification",
        str(marked),
        args,
        ["a", "b"],
        load_checkpoint_config(str(marked), args),
    )
    assert torch.all(loaded.bert.embeddings.word_embeddings.weight == 0.125)
    assert not torch.any(scratch.bert.embeddings.word_embeddings.weight == 0.125)
    assert scratch.config.id2label == {0: "a", 1: "b"}
    with pytest.raises(UserError, match="--random_init with --strategy frozen"):
        build_args("text", random_init=True, strategy="frozen")
