"""Fine-tune an image classifier from a pretrained checkpoint.

    accelerate launch recipes/image_classify.py                     # embedded default: EfficientNet-Lite0 on Fashion-MNIST
    accelerate launch recipes/image_classify.py --model_name_or_path google/vit-base-patch16-224 \
        --dataset_name ./photos --strategy llrd --augment crop hflip rotate:degrees=15 --augment_copies 2
    python recipes/image_classify.py --config run.yaml

Every `transformers.TrainingArguments` flag works, plus the toolkit's own (see --help).
"""

import os
import sys

sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # run from a checkout

from tl_hf.cli.process import exit_process  # noqa: E402
from tl_hf.cli.recipe import main  # noqa: E402

if __name__ == "__main__":
    exit_process(main("image"))
