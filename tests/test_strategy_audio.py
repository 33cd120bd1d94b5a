"""Layer-depth mapping, LLRD groups and freezing for the audio families, on tiny models
built from configs."""

from __future__ import annotations

import re

import pytest

from tl_hf.strategy import (
    apply_freeze_feature_encoder,
    apply_strategy,
    build_param_groups,
    head_parameter_names,
    num_blocks,
    parameter_depths,
)

LAYERS = 3


def _wav2vec2_kwargs(**extra):
    return dict(
        hidden_size=16,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=8,
        conv_dim=(8, 8),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        num_labels=3,
        **extra,
    )


def _wav2vec2(stable: bool = False):
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    return Wav2Vec2ForSequenceClassification(
        Wav2Vec2Config(**_wav2vec2_kwargs(do_stable_layer_norm=stable))
    )


def _hubert():
    from transformers import HubertConfig, HubertForSequenceClassification

    return HubertForSequenceClassification(HubertConfig(**_wav2vec2_kwargs()))


def _wavlm():
    from transformers import WavLMConfig, WavLMForSequenceClassification

    return WavLMForSequenceClassification(WavLMConfig(**_wav2vec2_kwargs()))


def _ast():
    from transformers import ASTConfig, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=16,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=8,
        num_mel_bins=16,
        max_length=32,
        num_labels=3,
    )
    return ASTForAudioClassification(config)


def _whisper():
    from transformers import WhisperConfig, WhisperForAudioClassification

    config = WhisperConfig(
        encoder_layers=LAYERS,
        decoder_layers=1,
        d_model=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=8,
        decoder_ffn_dim=8,
        max_source_positions=10,
        num_mel_bins=4,
        classifier_proj_size=8,
        num_labels=3,
    )
    return WhisperForAudioClassification(config)


BUILDERS = {
    "wav2vec2": _wav2vec2,
    "hubert": _hubert,
    "wavlm": _wavlm,
    "ast": _ast,
    "whisper": _whisper,
}
# The block index in a parameter name, per family, to check depth == index + 1.
BLOCK = re.compile(r"(?:encoder\.layers|encoder\.layer|\blayers)\.(\d+)\.")
FRONT_END = re.compile(
    r"feature_extractor|feature_projection|pos_conv_embed|masked_spec_embed|"
    r"embeddings\.|conv1|conv2|embed_positions"
)
HEADS = {
    "wav2vec2": {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias"},
    "hubert": {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias"},
    "wavlm": {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias"},
    "ast": {
        "classifier.layernorm.weight",
        "classifier.layernorm.bias",
        "classifier.dense.weight",
        "classifier.dense.bias",
    },
    "whisper": {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias"},
}


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_every_parameter_placed_in_layer_order(family):
    model = BUILDERS[family]()
    depths = parameter_depths(model)
    names = [n for n, _ in model.named_parameters()]
    assert set(depths) == set(names)
    assert num_blocks(model) == LAYERS
    top = LAYERS + 1
    for name in names:
        block = BLOCK.search(name)
        if family in ("wav2vec2", "hubert", "wavlm") and ".encoder.layer_norm." in name:
            # post-norm (the default config): this norm feeds the first block
            assert depths[name] == 0, name
        elif block:
            assert depths[name] == int(block.group(1)) + 1, name
        elif FRONT_END.search(name):
            assert depths[name] == 0, name
        else:  # final norms and head
            assert depths[name] == top, name
    # depths never decrease along the module order of the blocks
    block_depths = [depths[n] for n in names if BLOCK.search(n)]
    assert block_depths == sorted(block_depths) and set(block_depths) == set(range(1, top))
    assert head_parameter_names(model) == HEADS[family]


def test_wav2vec2_encoder_norm_follows_architecture():
    post = parameter_depths(_wav2vec2(stable=False))
    pre = parameter_depths(_wav2vec2(stable=True))
    # post-norm: the norm sits before the first block; pre-norm ("stable"): after the last
    assert post["wav2vec2.encoder.layer_norm.weight"] == 0
    assert pre["wav2vec2.encoder.layer_norm.weight"] == LAYERS + 1


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_llrd_group_learning_rates(family):
    model = BUILDERS[family]()
    lr, decay = 1e-3, 0.7
    groups = build_param_groups(model, "llrd", lr, 0.01, decay)
    assert {g["depth"] for g in groups} == set(range(LAYERS + 2))
    for group in groups:
        assert group["lr"] == pytest.approx(lr * decay ** (LAYERS + 1 - group["depth"]), rel=1e-12)
    # Whisper's sinusoidal encoder positions are fixed (requires_grad False) in transformers
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(g["num_params"] for g in groups) == total


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_frozen_trains_only_the_head(family):
    model = BUILDERS[family]()
    trainable = apply_strategy(model, "frozen")
    assert trainable == HEADS[family]
    assert {n for n, p in model.named_parameters() if p.requires_grad} == HEADS[family]


def test_freeze_feature_encoder():
    model = _wav2vec2()
    apply_strategy(model, "full")
    conv = sum(p.numel() for p in model.wav2vec2.feature_extractor.parameters())
    assert apply_freeze_feature_encoder(model) == conv > 0
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.wav2vec2.feature_projection.parameters())
    groups = build_param_groups(model, "full", 1e-4, 0.0)
    assert sum(g["num_params"] for g in groups) == sum(p.numel() for p in model.parameters()) - conv
    # already frozen: nothing more to freeze; models without a conv encoder: no-op
    assert apply_freeze_feature_encoder(model) == 0
    for build in (_ast, _whisper):
        other = build()
        before = [p.requires_grad for p in other.parameters()]
        assert apply_freeze_feature_encoder(other) == 0
        assert [p.requires_grad for p in other.parameters()] == before
