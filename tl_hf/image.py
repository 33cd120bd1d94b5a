"""Image modality: what differs for images in each step of the flow (columns, file checks,
the image processor, collation, mixup/cutmix, the embedded default). The shared steps call
these functions; `tl_hf/text.py` and `tl_hf/audio.py` have the same ones."""

from __future__ import annotations

import os

from tl_hf.config import UserError

NAME = "image"
AUTO_MODEL = "AutoModelForImageClassification"
PIPELINE_TASK = "image-classification"
DEFAULT_DATASET = "embedded:fashion_mnist"  # what run_config.yaml and the card name the default data
INPUT_COLUMN = "image"
# Pixel tensors are large: they are made per batch (with_transform), never stored.
PREPROCESS_ON_ACCESS = True
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
IMAGE_CANDIDATES = ("image", "img", "picture", "photo", "image_path", "image_file", "file", "path", "filepath")


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

    from tl_hf.data import media_folder

    return media_folder(path, EXTENSIONS, Image(), INPUT_COLUMN, "image")


def find_input_columns(columns: list[str], features, label: str, data_args) -> dict[str, str]:
    """{"image": column}: the one named, else the only Image column, else a usual name."""
    from datasets import Image

    if data_args.image_column:
        if data_args.image_column not in columns:
            raise UserError(f"image column {data_args.image_column!r} not found; columns are: {', '.join(columns)}")
        return {"image": data_args.image_column}
    images = [c for c in columns if isinstance(features[c], Image)]
    if len(images) == 1:
        return {"image": images[0]}
    lowered = {c.lower(): c for c in columns if c != label}
    for name in IMAGE_CANDIDATES:
        if name in lowered:
            return {"image": lowered[name]}
    raise UserError(f"cannot tell which column holds the images; columns are: {', '.join(columns)}: "
                    "pass --image_column")


def _readable(value) -> str | None:
    from io import BytesIO

    from PIL import Image

    try:
        source = BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        with Image.open(source) as image:
            image.load()  # a truncated file fails here, not at open()
        return None
    except Exception as err:  # PIL raises many types for bad files
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"


def validate_inputs(dsd, data_args):
    """Image paths become an Image feature; every file must decode (see --skip_bad_files)."""
    from datasets import Image

    from tl_hf.data import check_media_files, path_column_to_feature

    if not isinstance(dsd["train"].features["image"], Image):
        source = data_args.train_file or data_args.dataset_name
        base = os.path.dirname(os.path.abspath(source)) if source and os.path.isfile(source) else None
        dsd = path_column_to_feature(dsd, "image", Image(), base)
    return check_media_files(dsd, "image", Image(), _readable, data_args.skip_bad_files, "image")


def build_processor(model_path: str, args, config=None):
    """The checkpoint's image processor, resized to `--image_size` when given."""
    from transformers import AutoImageProcessor

    model_args, size = args.model, args.data.image_size
    if size and getattr(config, "model_type", None) == "timm_wrapper":
        # timm processors read their data config from the model config's pretrained_cfg
        config.pretrained_cfg = {**config.pretrained_cfg, "input_size": [3, size, size]}
        from transformers import TimmWrapperImageProcessor

        return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg, architecture=config.architecture)
    processor = AutoImageProcessor.from_pretrained(
        model_path, revision=model_args.model_revision, cache_dir=model_args.cache_dir,
        trust_remote_code=model_args.trust_remote_code,
    )
    if size:
        current = dict(getattr(processor, "size", None) or {})
        processor.size = {"shortest_edge": size} if "shortest_edge" in current else {"height": size, "width": size}
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


def make_preprocess(processor, data_args, training: bool = False):
    return Preprocess(processor)


def preprocess(dsd, processor, data_args, num_proc=None, skip=()):
    """Every split but `skip` turns into pixel values when read (`with_transform`)."""
    from datasets import DatasetDict

    return DatasetDict({split: ds.with_transform(Preprocess(processor))
                        for split, ds in dsd.items() if split not in skip})


def collate(rows):
    import torch

    batch = {"pixel_values": torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows])}
    if "labels" in rows[0]:  # absent when features are extracted for the cache
        batch["labels"] = torch.tensor([int(r["labels"]) for r in rows])
    return batch


def build_collator(processor):
    return collate


def augment_context(processor, args) -> dict:
    return {}


def build_augmenter(specs, context):
    from tl_hf.augment.image import build_augmenter

    return build_augmenter(specs, INPUT_COLUMN, **context)


def build_batch_augment(specs, num_labels: int, seed: int):
    """mixup / cutmix on collated training batches (soft labels), or None."""
    from tl_hf.augment.image import build_batch_mixer

    return build_batch_mixer(specs, num_labels)
