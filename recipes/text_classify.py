"""Fine-tune a text classifier from a pretrained checkpoint.

    accelerate launch recipes/text_classify.py                      # embedded default: MiniLM on BBC News
    accelerate launch recipes/text_classify.py --model_name_or_path bert-base-uncased \
        --dataset_name ag_news --strategy llrd --llrd_decay 0.8
    python recipes/text_classify.py --config run.yaml --learning_rate 3e-5

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
    exit_process(main("text"))
