"""The names of everything tl-hf writes into an output folder, in one place.

`tl_hf.output.ownership` reads them to tell tl-hf's entries from a user's: an entry of an
output folder is tl-hf's when its name is one of these (or was claimed when written, as the
model and processor files are, whose names depend on the checkpoint).
"""

from __future__ import annotations

import os
import re

# -- a run folder
FINISHED_MARKER = "all_results.json"  # written last: a folder that has it is complete
HISTORY_FILE = "training_history.json"
CURVES_FILE = "training_curves.png"
DIAGNOSIS_FILE = "diagnosis.json"
REPORT_FILE = "report.html"
LIVE_DATA_FILE = "report.live.js"  # the live report's data, rewritten every evaluation
CARD_FILE = "README.md"
PREVIEW_FILE = "augment_preview.png"
PREDICTIONS_FILE = "test_predictions.json"
PARAM_GROUPS_FILE = "param_groups.json"
RUN_CONFIG_FILE = "run_config.yaml"
SELECTION_FILE = "selection.json"  # the ranking of --candidates (tl_hf.select)
CALIBRATION_FILE = "calibration.json"  # the temperature fitted on the validation split
TIMINGS_FILE = "timings.json"
MONITOR_STATE = "tl_hf_monitor.json"  # the history inside each checkpoint folder
STAGING_DIR = ".tl_hf_model.tmp"  # the final model is saved here, then moved in file by file
ADAPTER_DIR = "adapter"  # --strategy lora: the adapter beside the merged model
TENSORBOARD_DIR = "tensorboard"
TRACKIO_DIR = "trackio"
AUGMENT_PREVIEW = (
    "augment_preview.png",
    "augment_preview.txt",
    "augment_preview.jsonl",
    "augment_preview",
)

# -- a lab folder
LAB_DB = "lab.db"
TRIALS_DIR = "trials"
WINNER_DIR = "winner"
LAB_RESULTS_JSON = "lab_results.json"
LAB_RESULTS_CSV = "lab_results.csv"
LAB_REPORT = "lab_report.html"
PLAYBOOK_JSON = "playbook.json"
PLAYBOOK_REPORT = "playbook_report.html"


def trial_folder(lab_dir: str, number: int) -> str:
    """A lab trial's run folder."""
    return os.path.join(lab_dir, TRIALS_DIR, f"trial_{int(number):04d}")


# -- ownership plumbing (tl_hf.output.ownership)
MANIFEST = ".tl_hf_manifest.json"
LOCK = ".tl_hf.lock"

RUN_NAMES = frozenset(
    {
        FINISHED_MARKER,
        HISTORY_FILE,
        CURVES_FILE,
        DIAGNOSIS_FILE,
        REPORT_FILE,
        LIVE_DATA_FILE,
        CARD_FILE,
        PREDICTIONS_FILE,
        PARAM_GROUPS_FILE,
        RUN_CONFIG_FILE,
        SELECTION_FILE,
        CALIBRATION_FILE,
        TIMINGS_FILE,
        STAGING_DIR,
        ADAPTER_DIR,
        TENSORBOARD_DIR,
        TRACKIO_DIR,
        *AUGMENT_PREVIEW,
    }
)
LAB_NAMES = frozenset(
    {
        LAB_DB,
        TRIALS_DIR,
        WINNER_DIR,
        LAB_RESULTS_JSON,
        LAB_RESULTS_CSV,
        LAB_REPORT,
        PLAYBOOK_JSON,
        PLAYBOOK_REPORT,
    }
)
# What a model's save_pretrained writes (claimed when written; these names are what a folder
# written by an older tl-hf, which kept no manifest, is recognised by).
MODEL_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "training_args.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "chat_template.jinja",
        "preprocessor_config.json",
        "processor_config.json",
        "feature_extractor_config.json",
        "adapter_config.json",
        "adapter_model.safetensors",
    }
)
_PATTERNS = (
    re.compile(r"^checkpoint-\d+$"),  # the Trainer's checkpoints
    re.compile(r"^\..+\.tmp-\d+$"),  # a write in progress (tl_hf.output.atomic)
    re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$"),  # a sharded model
    re.compile(r"^lab\.db(-journal|-wal|-shm|\.lock)$"),  # SQLite's and the lab's side files
)


def is_tl_hf_name(name: str, lab: bool = False) -> bool:
    """Whether `name` is one tl-hf writes into a run folder (or a lab folder, with `lab`)."""
    return name in RUN_NAMES or (lab and name in LAB_NAMES) or any(p.match(name) for p in _PATTERNS)
