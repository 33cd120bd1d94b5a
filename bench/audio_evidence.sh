#!/usr/bin/env bash
# Audio evidence for issues 24-26 on the two real audio sets (spoken_language, drum_kits),
# 20 training clips per class, 3 seeds, one stream per set (run both side by side):
#   bash bench/audio_evidence.sh spoken_language     # and drum_kits
# The recipe default (llrd, 10 epochs) with no augmentation, with each audio policy drawn
# fresh every epoch, the plain Trainer, and the next rung of the audio ladder (Whisper base).
# Results: bench/results/audio_evidence.jsonl; the table:
#   python bench/defaults_evidence.py --table bench/results/audio_evidence.jsonl \
#     --columns plain none specaugment noise time_stretch whisper_base
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:?set name}
PER_CLASS=${PER_CLASS:-20}
OUT=${OUT:-bench/results/audio_evidence.jsonl}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=.
PY=${PY:-.venv/bin/python}
run() {  # label, flags
  "$PY" bench/defaults_evidence.py --sets "$SET:$PER_CLASS" --arms default --label "$1" \
    --flags "$2" --out "$OUT"
}
"$PY" bench/defaults_evidence.py --sets "$SET:$PER_CLASS" --arms plain --out "$OUT"
run none '{"augment": ["none"]}'
run specaugment '{"augment": ["specaugment"], "augment_mode": "on_the_fly"}'
run noise '{"augment": ["noise"], "augment_mode": "on_the_fly"}'
run time_stretch '{"augment": ["time_stretch"], "augment_mode": "on_the_fly"}'
run whisper_base '{"model_name_or_path": "whisper_base", "augment": ["none"]}'
