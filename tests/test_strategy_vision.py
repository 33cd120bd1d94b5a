"""Layer-depth mapping, LLRD groups and freezing for the vision families, on tiny models."""

from __future__ import annotations

import pytest

from tl_hf.errors import UserError
from tl_hf.strategy import (
    apply_strategy,
    build_param_groups,
    head_parameter_names,
    num_blocks,
    parameter_depths,
)

_VIT = dict(
    hidden_size=16,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=20,
    image_size=16,
    patch_size=8,
    num_labels=3,
)


def _vit():
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(**_VIT))


def _deit():
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    return DeiTForImageClassificationWithTeacher(DeiTConfig(**_VIT))


def _beit():
    from transformers import BeitConfig, BeitForImageClassification

    return BeitForImageClassification(
        BeitConfig(**_VIT, use_shared_relative_position_bias=True, use_mean_pooling=True)
    )


def _convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    return ConvNextForImageClassification(
        ConvNextConfig(num_stages=3, hidden_sizes=[4, 8, 8], depths=[1, 2, 1], num_labels=3)
    )


def _swin():
    from transformers import SwinConfig, SwinForImageClassification

    return SwinForImageClassification(
        SwinConfig(
            image_size=16,
            patch_size=2,
            embed_dim=4,
            depths=[2, 1, 1],
            num_heads=[1, 1, 1],
            window_size=2,
            num_labels=3,
        )
    )


def _resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(
        ResNetConfig(embedding_size=4, hidden_sizes=[4, 8], depths=[1, 2], num_labels=3)
    )


def _efficientnet():
    from transformers import EfficientNetConfig, EfficientNetForImageClassification

    return EfficientNetForImageClassification(
        EfficientNetConfig(
            image_size=16, width_coefficient=0.1, depth_coefficient=0.4, hidden_dim=16, num_labels=3
        )
    )


def _mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification(
        MobileNetV2Config(image_size=16, depth_multiplier=0.1, num_labels=3)
    )


def _timm(architecture: str = "test_efficientnet"):
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    pytest.importorskip("timm")
    return TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture=architecture, num_labels=3)
    )


BUILDERS = {
    "vit": (_vit, 3),
    "deit": (_deit, 3),
    "beit": (_beit, 3),
    "convnext": (_convnext, 4),
    "swin": (_swin, 4),
    "resnet": (_resnet, 3),
    "efficientnet": (_efficientnet, 10),  # sum(ceil(0.4 * r) for r in (1, 2, 2, 3, 3, 4, 1))
    "mobilenet_v2": (_mobilenet_v2, 16),
    "timm_efficientnet": (_timm, 5),  # timm's test_efficientnet has 5 block stages
    "timm_lite0": (lambda: _timm("tf_efficientnet_lite0"), 7),
    "timm_mobilenetv3": (lambda: _timm("mobilenetv3_small_050"), 6),
}


@pytest.mark.parametrize("family", list(BUILDERS))
def test_every_parameter_placed_in_block_order(family):
    build, blocks = BUILDERS[family]
    model = build()
    assert num_blocks(model) == blocks
    depths = parameter_depths(model)
    names = [n for n, _ in model.named_parameters()]
    assert set(depths) == set(names)
    # Parameters are registered in forward order, so depths never go down along them ...
    in_order = [depths[n] for n in names]
    assert in_order == sorted(in_order)
    # ... and every depth from the front-end to the top is used.
    assert set(in_order) == set(range(blocks + 2))
    heads = head_parameter_names(model)
    assert heads and all(depths[n] == blocks + 1 for n in heads)


def test_flattened_stage_depths():
    convnext, swin = parameter_depths(_convnext()), parameter_depths(_swin())
    # depths [1, 2, 1]: stage 1 block 1 is global block 2 (depth 3); the stage-entry
    # downsampler of stage 2 goes with its first block (global block 3, depth 4).
    assert convnext["convnext.encoder.stages.1.layers.1.dwconv.weight"] == 3
    assert convnext["convnext.encoder.stages.2.downsampling_layer.1.weight"] == 4
    assert convnext["convnext.embeddings.patch_embeddings.weight"] == 0
    assert convnext["convnext.layernorm.weight"] == 5
    # Swin depths [2, 1, 1]: patch merging at the end of stage 0 goes with its last block.
    assert swin["swin.encoder.layers.0.downsample.reduction.weight"] == 2
    assert swin["swin.encoder.layers.1.blocks.0.layernorm_before.weight"] == 3
    beit = parameter_depths(_beit())
    assert beit["beit.shared_position_bias.relative_position_bias_table"] == 0
    assert beit["beit.pooler.layernorm.weight"] == 4


@pytest.mark.parametrize("family", ["vit", "convnext", "swin", "resnet", "timm_efficientnet"])
def test_llrd_group_learning_rates(family):
    build, blocks = BUILDERS[family]
    model = build()
    lr, decay = 1e-3, 0.7
    groups = build_param_groups(model, "llrd", lr, weight_decay=0.05, llrd_decay=decay)
    assert {g["depth"] for g in groups} == set(range(blocks + 2))
    for group in groups:
        assert group["lr"] == lr * decay ** (blocks + 1 - group["depth"])
    assert sum(g["num_params"] for g in groups) == sum(p.numel() for p in model.parameters())
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert all(id(p) in no_decay for n, p in model.named_parameters() if n.endswith("bias"))


@pytest.mark.parametrize(
    ("family", "head"),
    [
        ("vit", {"classifier.weight", "classifier.bias"}),
        (
            "deit",
            {
                "cls_classifier.weight",
                "cls_classifier.bias",
                "distillation_classifier.weight",
                "distillation_classifier.bias",
            },
        ),
        ("convnext", {"classifier.weight", "classifier.bias"}),
        ("resnet", {"classifier.1.weight", "classifier.1.bias"}),
        ("swin", {"classifier.weight", "classifier.bias"}),
        ("timm_efficientnet", {"timm_model.classifier.weight", "timm_model.classifier.bias"}),
    ],
)
def test_frozen_trains_only_the_head(family, head):
    model = BUILDERS[family][0]()
    assert apply_strategy(model, "frozen") == head
    assert {n for n, p in model.named_parameters() if p.requires_grad} == head


def test_frozen_batchnorm_keeps_running_statistics():
    import torch

    torch.manual_seed(0)
    model = _resnet()
    apply_strategy(model, "frozen")
    model.train()  # what the Trainer does every epoch
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norms
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in norms.items()}
    head_before = model.classifier[1].weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        out = model(
            pixel_values=torch.randn(4, 3, 16, 16) * 3 + 1, labels=torch.tensor([0, 1, 2, 1])
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for n, m in norms.items():
        assert torch.equal(m.running_mean, before[n][0]) and torch.equal(
            m.running_var, before[n][1]
        ), n
    assert not torch.equal(model.classifier[1].weight, head_before)  # the head did train


def test_frozen_with_top_blocks_of_timm_model():
    model = _timm()
    trainable = apply_strategy(model, "frozen", trainable_layers=1)
    assert any(n.startswith("timm_model.blocks.4.") for n in trainable)
    assert not any(n.startswith("timm_model.blocks.3.") for n in trainable)
    assert {"timm_model.conv_head.weight", "timm_model.classifier.weight"} <= trainable


def test_unsupported_timm_architecture_fails_loudly():
    model = _timm("test_resnet")
    with pytest.raises(UserError, match="test_resnet"):
        parameter_depths(model)
    with pytest.raises(UserError, match="test_resnet"):
        apply_strategy(model, "frozen")
