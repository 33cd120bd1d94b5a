"""The fine-tuning lab: strategies x learning rates x layers x augmentation sets x seeds, side by side.

    accelerate launch recipes/lab.py --modality text --strategies frozen llrd full --learning_rates auto --seeds 3
    python recipes/lab.py --modality image --augment_sets none light=hflip+rotate:degrees=15 --time_budget_minutes 30
    python recipes/lab.py --storage postgresql://host/db --study_name mylab ...   # several workers, one study

Every recipe flag works (data, checkpoint, TrainingArguments), plus the lab's own (see --help).
"""

import os
import sys

sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # run from a checkout

from tl_hf.cli.process import exit_process  # noqa: E402
from tl_hf.lab import main  # noqa: E402

if __name__ == "__main__":
    exit_process(main())
