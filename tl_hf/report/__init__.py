"""What a run tells its user, one module per thing it makes (the report step of the flow:
... -> train -> report -> save/push):

- `monitor`: `MonitorCallback`, the `TrainerCallback` that records the history, keeps the
  live `report.html` up to date and rewrites `training_history.json` /
  `training_curves.png` after every evaluation;
- `live`: the live page (inline SVG charts, `report.live.js` sidecar, `--monitor_port`);
- `history`: the history's structure, its best evaluation, the folder's file names;
- `curves`: `write_training_curves`, the PNG;
- `diagnosis`: `diagnose` (underfitting, overfitting, healthy) and `diagnosis.json`;
- `html_report`: `write_report_html`, the self-contained `report.html`;
- `card`: `build_model_card`, the `README.md` model card with Hub metadata;
- `share`: names instead of local paths in what a run shares, the reproduce command;
- `trackers`: `--report_to tensorboard/trackio` offline, per-group learning rates, final
  metrics and diagnosis;
- `folder`: reading a finished run's folder (what the report and the card are built from).

Everything reads the files a run leaves in its output folder, so it also works on an old
run's folder. `import tl_hf` does not import this package (the monitor needs transformers).
"""

from tl_hf.report.card import build_model_card, card_eval_results, is_hub_id
from tl_hf.report.curves import write_training_curves
from tl_hf.report.diagnosis import diagnose, format_diagnosis, write_diagnosis
from tl_hf.report.history import (
    CARD_FILE,
    CURVES_FILE,
    DIAGNOSIS_FILE,
    HISTORY_FILE,
    PREDICTIONS_FILE,
    PREVIEW_FILE,
    REPORT_FILE,
    best_eval,
    finalize_history,
    load_history,
    new_history,
)
from tl_hf.report.html_report import confusion_matrix, write_report_html
from tl_hf.report.monitor import MonitorCallback

__all__ = [
    "CARD_FILE",
    "CURVES_FILE",
    "DIAGNOSIS_FILE",
    "HISTORY_FILE",
    "PREDICTIONS_FILE",
    "PREVIEW_FILE",
    "REPORT_FILE",
    "MonitorCallback",
    "best_eval",
    "build_model_card",
    "card_eval_results",
    "confusion_matrix",
    "diagnose",
    "finalize_history",
    "format_diagnosis",
    "is_hub_id",
    "load_history",
    "new_history",
    "write_diagnosis",
    "write_report_html",
    "write_training_curves",
]
