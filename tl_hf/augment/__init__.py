"""Label-preserving augmentation of the training split (re-exports only: `tl_hf.augment.base`
holds what every modality shares; `text`, `image`, `audio` each modality's augmenters)."""

from tl_hf.augment.base import *  # noqa: F401,F403
