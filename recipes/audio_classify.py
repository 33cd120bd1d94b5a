"""Fine-tune an audio classifier from a pretrained checkpoint.

    accelerate launch recipes/audio_classify.py                     # embedded default: Whisper tiny.en keyword spotter
    accelerate launch recipes/audio_classify.py --model_name_or_path facebook/wav2vec2-base \
        --dataset_name ./clips --max_duration_seconds 2 --augment noise:snr_db=10/30 time_stretch --augment_copies 2
    python recipes/audio_classify.py --config run.yaml

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
    exit_process(main("audio"))
