"""Image modality: what differs for images in each step of the flow (columns, file checks,
the image processor, collation, mixup/cutmix, the embedded default), declared once in
`MODALITY` (see `tl_hf.modality.Modality`). Media code shared with audio is in `tl_hf.modalities.media`."""

from __future__ import annotations

from dataclasses import dataclass, field

from tl_hf.modalities.base import Modality, register_modality

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# Smaller images hold nothing to learn from (a 1x1 placeholder, a tracking pixel).
MIN_SIDE = 8
IMAGE_CANDIDATES = (
    "image",
    "img",
    "picture",
    "photo",
    "image_path",
    "image_file",
    "file",
    "path",
    "filepath",
)


@dataclass
class ImageArguments:
    """The image modality's own flags."""

    image_size: int | None = field(
        default=None,
        metadata={
            "range": "[1, inf)",
            "help": "Image: resize to N x N instead of the checkpoint's size (smaller trains faster; "
            "convolutional and timm models).",
        },
    )


# Convolutional families whose weights take any input size (no position embeddings); a timm
# model says so itself (`pretrained_cfg["fixed_input_size"]`).
RESIZABLE_MODEL_TYPES = frozenset(
    {"resnet", "convnext", "convnextv2", "efficientnet", "mobilenet_v1", "mobilenet_v2", "regnet"}
)
# The image-size rule (docs/defaults.md, "Image size"): measured on 8 px and 28 px digits,
# every input below the checkpoint's own size scored lower (112 px: 1-2 points, 64 px: 4-10,
# 32 px: 12-20), so small images keep the checkpoint's size; when they are at most
# 1/SPEED_HINT_RATIO of it the run says what a smaller --image_size would save and cost (a
# training step at 112 px costs 0.26x one at 224: bench/bench_image_size.py).
SPEED_HINT_RATIO = 2
SIZE_SAMPLE = 256  # training images whose header is read


def native_size(processor) -> int | None:
    """The square input side the checkpoint's processor produces (None: not a fixed square)."""
    data_config = getattr(processor, "data_config", None)  # timm
    if data_config and data_config.get("input_size"):
        return int(data_config["input_size"][-1])
    for sizes in (getattr(processor, "crop_size", None), getattr(processor, "size", None)):
        sizes = dict(sizes or {})
        if "height" in sizes:
            return int(sizes["height"])
        if "shortest_edge" in sizes:
            return int(sizes["shortest_edge"])
    return None


def resizable(config) -> bool:
    """Whether the checkpoint takes inputs of another size than its own."""
    if getattr(config, "model_type", None) == "timm_wrapper":
        return not (getattr(config, "pretrained_cfg", None) or {}).get("fixed_input_size", True)
    return getattr(config, "model_type", None) in RESIZABLE_MODEL_TYPES


def median_shorter_side(train) -> int:
    """The median shorter side of up to SIZE_SAMPLE training images (headers only)."""
    import statistics
    from io import BytesIO

    from datasets import Image
    from PIL import Image as PILImage

    from tl_hf.modalities.media import sampled_undecoded

    sides = []
    for value in sampled_undecoded(train, "image", Image, SIZE_SAMPLE):
        source = BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        with PILImage.open(source) as image:  # the header: nothing decoded
            sides.append(min(image.size))
    return int(statistics.median(sides))


def rules_from_data(train, processor, data_args, config) -> list:
    """`--image_size` when not given, for a checkpoint that takes other sizes: small images
    keep the checkpoint's size (the measured best), with the faster choice named."""
    from tl_hf.modalities.base import DataRule

    native = native_size(processor)
    if data_args.image_size or native is None or not resizable(config):
        return []
    side = median_shorter_side(train)
    if side * SPEED_HINT_RATIO > native:
        return []
    reason = (
        f"the training images' median shorter side is {side} px; the checkpoint's {native} px "
        "is kept, smaller inputs scored lower on small images (docs/defaults.md, image size); "
        f"--image_size {native // SPEED_HINT_RATIO} trains 2-4x faster, 1-2 points lower there"
    )
    return [DataRule("image_size", native, reason)]


def default_model() -> str:
    from tl_hf.embedded.vision import efficientnet_lite0_folder

    return efficientnet_lite0_folder()


def load_default_dataset(data_args):
    """Fashion-MNIST from Debian's dataset-fashion-mnist: 100/30/100 images per class."""
    from tl_hf.embedded.vision import load_fashion_mnist

    return load_fashion_mnist(per_class_train=100, per_class_validation=30, per_class_test=100)


def load_folder(path: str, data_args):
    """One subfolder of images per class (or train/validation/test folders of those)."""
    from datasets import Image

    from tl_hf.modalities.media import media_folder

    return media_folder(path, EXTENSIONS, Image(), "image", "image")


def find_input_columns(columns: list[str], features, label: str, data_args) -> dict[str, str]:
    """{"image": column}: the one named, else the only Image column, else a usual name."""
    from datasets import Image

    from tl_hf.modalities.media import find_media_column

    return {
        "image": find_media_column(
            columns, features, label, data_args.image_column, Image, IMAGE_CANDIDATES, "image"
        )
    }


def _readable(value) -> str | None:
    from io import BytesIO

    from PIL import Image

    try:
        source = BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        with Image.open(source) as image:
            image.load()  # a truncated file fails here, not at open()
            if min(image.size) < MIN_SIDE:
                return f"{image.width}x{image.height} pixels, too small to classify"
        return None
    except Exception as err:  # PIL raises many types for bad files
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"


def validate_inputs(dsd, data_args):
    """Image paths become an Image feature; every file must decode (see --skip_bad_files)."""
    from datasets import Image

    from tl_hf.modalities.media import validate_media

    return validate_media(dsd, data_args, "image", Image(), _readable, "image")


def build_processor(model_path: str, args, config=None):
    """The checkpoint's image processor, resized to `--image_size` when given."""
    from transformers import AutoImageProcessor

    model_args, size = args.model, args.data.image_size
    if size and getattr(config, "model_type", None) == "timm_wrapper":
        # timm processors read their data config from the model config's pretrained_cfg
        config.pretrained_cfg = {**config.pretrained_cfg, "input_size": [3, size, size]}
        from transformers import TimmWrapperImageProcessor

        return TimmWrapperImageProcessor(
            pretrained_cfg=config.pretrained_cfg, architecture=config.architecture
        )
    processor = AutoImageProcessor.from_pretrained(
        model_path,
        revision=model_args.model_revision,
        cache_dir=model_args.cache_dir,
        trust_remote_code=model_args.trust_remote_code,
    )
    if size:
        current = dict(getattr(processor, "size", None) or {})
        processor.size = (
            {"shortest_edge": size}
            if "shortest_edge" in current
            else {"height": size, "width": size}
        )
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": size, "width": size}
    return processor


class Preprocess:
    """Batched: PIL images (any mode) -> RGB -> the processor's resize/normalise -> pixel_values."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, batch):
        from tl_hf.augment.image import as_pil, to_rgb

        images = [to_rgb(as_pil(image)) for image in batch["image"]]
        out = {"pixel_values": self.processor(images, return_tensors="pt")["pixel_values"]}
        out["labels"] = batch["label"]
        return out


def make_preprocess(processor, data_args, train_split: bool = False):
    return Preprocess(processor)


def collate(rows):
    import torch

    batch = {"pixel_values": torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows])}
    if "labels" in rows[0]:  # absent when features are extracted for the cache
        batch["labels"] = torch.tensor([int(r["labels"]) for r in rows])
    return batch


def build_collator(processor):
    return collate


def build_batch_augment(specs, num_labels: int, seed: int):
    """mixup / cutmix on collated training batches (soft labels), or None."""
    from tl_hf.augment.image import build_batch_mixer

    return build_batch_mixer(specs, num_labels, seed)


MODALITY = register_modality(
    Modality(
        name="image",
        task="image-classification",
        auto_model="AutoModelForImageClassification",
        input_column="image",
        column_flags=("image_column",),
        extensions=EXTENSIONS,
        # Convolutional vision backbones (BatchNorm, no attention) take larger steps than transformers.
        default_learning_rates={"frozen": 1e-2, "full": 1e-4, "llrd": 5e-4},
        example_input='"path/to/image.jpg"',
        default_dataset="embedded:fashion_mnist",
        default_model_hub_id="timm/tf_efficientnet_lite0.in1k",
        # LLRD's small rates on small image sets were still improving at epoch 10 (digits
        # 0.866 -> 0.900, mnist_5k 0.836 -> 0.861 at 20 epochs); the frozen strategies lose
        # with 20 (docs/defaults.md), so only llrd gets them
        default_epochs={"llrd": 20},
        # patience 3 of 20 epochs stopped on validation noise: the scaled loss kept 0.874 on
        # mnist_5k (patience 8: 0.906), 0.921 and 0.933 on digits (0.929, 0.945)
        default_patience={"llrd": 8},
        embedded_run_defaults={"image_size": 112, "num_train_epochs": 4},
        augment_module="tl_hf.augment.image",
        # Pixel tensors are large: they are made per batch (with_transform), never stored.
        preprocess_on_access=True,
        test_time_views=True,
        default_model=default_model,
        load_default_dataset=load_default_dataset,
        load_folder=load_folder,
        find_input_columns=find_input_columns,
        validate_inputs=validate_inputs,
        build_processor=build_processor,
        make_preprocess=make_preprocess,
        flags=ImageArguments,
        build_collator=build_collator,
        build_batch_augment=build_batch_augment,
        rules_from_data=rules_from_data,
    )
)
