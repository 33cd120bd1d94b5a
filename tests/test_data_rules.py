"""Settings chosen from the data (issues 24 and 26): small images keep the checkpoint's size
(smaller inputs measured lower) and the run names the faster choice; small image training
splits get randaugment on the fly when augmentation is left open. Each rule's boundary, its
line on the console, `run_config.yaml`, the card, and inference on the finished folder at the
size training used."""

import os

import numpy as np
import pytest
import yaml

from tl_hf.modalities.image import SPEED_HINT_RATIO, rules_from_data


def _tiny_resnet(path, size):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
    )
    ResNetForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessor(
        size={"shortest_edge": size}, crop_pct=1.0, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(path)
    return str(path)


def _small_images(side, per_class=8):
    """Two classes of `side` x `side` images (bright left vs bright right half)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)

    def rows(n):
        images, labels = [], []
        for i in range(2 * n):
            array = rng.integers(0, 60, size=(side, side, 3), dtype=np.uint8)
            half = slice(0, side // 2) if i % 2 == 0 else slice(side // 2, side)
            array[:, half] += 180
            images.append(PILImage.fromarray(array))
            labels.append(i % 2)
        return {"image": images, "label": labels}

    features = Features({"image": Image(), "label": ClassLabel(names=["left", "right"])})
    return DatasetDict(
        {
            s: Dataset.from_dict(rows(n), features=features)
            for s, n in [("train", per_class), ("validation", 4), ("test", 4)]
        }
    )


def _train(model, data, out, **flags):
    from tl_hf import train_classifier

    settings = {"strategy": "full", "num_train_epochs": 1, **flags}
    return train_classifier(
        "image",
        data,
        model_name_or_path=model,
        output_dir=str(out),
        per_device_train_batch_size=8,
        use_cpu=True,
        **settings,
    )


def _settings():
    from tl_hf.config.arguments import DataArguments
    from tl_hf.modalities.image import ImageArguments
    from tl_hf.registry import Settings

    return Settings(DataArguments(), ImageArguments())


@pytest.mark.parametrize("side, noted", [(8, True), (32, True), (33, False), (64, False)])
def test_the_rule_notes_images_at_most_half_the_checkpoint_size(tmp_path, side, noted):
    from transformers import AutoConfig, AutoImageProcessor

    model = _tiny_resnet(tmp_path / "resnet", 64)
    processor, config = AutoImageProcessor.from_pretrained(model), AutoConfig.from_pretrained(model)
    rules = rules_from_data(_small_images(side, 2)["train"], processor, _settings(), config)
    assert bool(rules) == noted
    if noted:  # the checkpoint's size is kept, the faster one named
        (rule,) = rules
        assert rule.value == 64 and f"--image_size {64 // SPEED_HINT_RATIO} trains" in rule.line


def test_small_images_keep_the_checkpoint_size_and_the_rule_is_recorded(tmp_path, capsys):
    model = _tiny_resnet(tmp_path / "resnet", 96)
    # the image default: llrd for 20 epochs (one step each), where the augmentation rule applies
    result = _train(
        model, _small_images(12), tmp_path / "out", strategy="llrd", num_train_epochs=20
    )
    printed = capsys.readouterr().out
    assert (
        "--image_size 96 from the data: the training images' median shorter side is 12 px"
        in printed
    )
    # 8 images per class, a fine-tuned backbone, augmentation left open: randaugment
    augment_line = "--augment randaugment --augment_mode on_the_fly from the data: 8 training"
    assert augment_line in printed
    assert (
        "augmentation: randaugment" in printed and "(on the fly, new draws every epoch)" in printed
    )
    assert result.args.data.image_size == 96
    assert result.args.augment.augment == ["randaugment"]
    config = yaml.safe_load((tmp_path / "out" / "run_config.yaml").read_text())
    assert config["image_size"] == 96
    assert (config["augment"], config["augment_mode"]) == (["randaugment"], "on_the_fly")
    assert config["rules_from_data"][0].startswith("--image_size 96 from the data")
    assert "--image_size 48 trains 2-4x faster" in config["rules_from_data"][0]
    assert config["rules_from_data"][1].startswith(augment_line)
    for flag in ("--image_size", "--augment"):
        assert flag not in config["command"]  # a rerun derives them again
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Chosen from the data: --image_size 96" in card
    assert "Chosen from the data: --augment randaugment --augment_mode on_the_fly" in card


def test_a_given_size_or_large_images_or_a_fixed_size_model_keep_theirs(tmp_path, capsys):
    from PIL import Image as PILImage
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    from tl_hf.infer.loaded import load_run

    model = _tiny_resnet(tmp_path / "resnet", 224)
    result = _train(model, _small_images(12), tmp_path / "given", image_size=32, augment=["none"])
    assert result.args.data.image_size == 32
    assert "from the data" not in capsys.readouterr().out  # neither the size nor augmentation
    config = yaml.safe_load((tmp_path / "given" / "run_config.yaml").read_text())
    assert "rules_from_data" not in config
    # inference on the folder preprocesses at the size training used, not the checkpoint's 224
    run = load_run(tmp_path / "given", device="cpu")
    pixels = run.encode({"image": [PILImage.new("RGB", (12, 12))]})["pixel_values"]
    assert tuple(pixels.shape[-2:]) == (32, 32)

    data = _settings()
    train = _small_images(12)["train"]
    resnet = (AutoImageProcessor.from_pretrained(model), AutoConfig.from_pretrained(model))
    assert [r.value for r in rules_from_data(train, *resnet[:1], data, resnet[1])] == [224]
    assert rules_from_data(_small_images(240, 2)["train"], resnet[0], data, resnet[1]) == []
    # a ViT's position embeddings fix its input size: no rule
    vit = tmp_path / "vit"
    ViTForImageClassification(
        ViTConfig(
            image_size=224,
            patch_size=32,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
        )
    ).save_pretrained(vit)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(vit)
    processor, config = AutoImageProcessor.from_pretrained(vit), AutoConfig.from_pretrained(vit)
    assert rules_from_data(train, processor, data, config) == []
    assert os.path.isdir(vit)


@pytest.mark.parametrize(
    "per_class, flags, applies",
    [
        (80, {}, True),  # at the threshold, the llrd default (20 epochs)
        (81, {}, False),  # above it
        (8, {"strategy": "full", "num_train_epochs": 20}, True),
        (8, {"strategy": "full"}, False),  # its default 10 epochs: fewer than measured
        (8, {"num_train_epochs": 2}, False),  # fresh draws need epochs to pay
        (8, {"max_steps": 100}, False),
        (8, {"strategy": "frozen"}, False),  # a head on frozen features keeps its cache
        (8, {"strategy": "lp_ft"}, False),
        (8, {"augment": ["none"]}, False),  # the user's choice stands
        (8, {"augment": ["crop"]}, False),
        (8, {"augment_mode": "map"}, False),
        (8, {"augment_copies": 2}, False),
    ],
)
def test_the_small_data_augmentation_rule_and_its_boundary(per_class, flags, applies):
    from tl_hf.augment.base import small_data_rule
    from tl_hf.augment.image import SMALL_DATA
    from tl_hf.config import build_args
    from tl_hf.modalities.base import get_modality, with_rules
    from tl_hf.strategies.base import get_strategy

    assert (SMALL_DATA.most_per_class, SMALL_DATA.min_epochs) == (80, 20)  # what the cases name
    train = _small_images(8, per_class)["train"]
    args = build_args("image", train, **flags)
    rules = small_data_rule(
        get_modality("image"), get_strategy(args.strategy.strategy), args, train
    )
    assert bool(rules) == applies
    if applies:
        ran = with_rules(args, rules).augment
        assert (ran.augment, ran.augment_mode) == (["randaugment"], "on_the_fly")
        assert rules[0].line.startswith(
            f"--augment randaugment --augment_mode on_the_fly from the data: {per_class} training rows per class (at most 80)"
        )
    # text and audio measured no such gain: no rule there
    text = build_args("text", train)
    assert small_data_rule(get_modality("text"), get_strategy("lp_ft"), text, train) == []
