#!/usr/bin/env bash
# The one prepared GPU check: plain transformers.Trainer vs tl-hf on one GPU, with a bare-loop
# anchor, a short profile and a table of ratios and MFU (bench/gpu_bench.py has the arms).
#
#   python bench/gpu_prepare.py          # HERE, once: builds the git-ignored .gpu_carry/ (~60 MiB)
#   bash bench/gpu_check.sh              # THERE (device tool, carry [".gpu_carry"]): under 8 minutes
#   DRY_RUN=1 bash bench/gpu_check.sh    # HERE, no GPU: the whole flow on the CPU with tiny sizes
#
# On the GPU machine (torch, no datasets/evaluate/dill/multiprocess, transformers 5.17) it:
# 1. installs the carried wheels (datasets 5.2, dill, multiprocess, evaluate 0.4.6, xxhash, peft,
#    transformers 5.23) with `pip install --no-index --no-deps --target /tmp/site`;
# 2. restores MiniLM to float32 from the carried bf16 copy and builds a BERT-base-size model
#    (random weights) from a config;
# 3. runs every arm in its own process (bench/gpu_bench.py run), skipping what is left once
#    BUDGET_S seconds (default 400) have passed, and prints the tables; the log and
#    gpu_bench.json go to $OUT.
# ONLY=arm1,arm2 runs a subset (names in bench/gpu_bench.py); SEEDS=3 repeats the arms that
# report a test accuracy with two more seeds once the first pass is done (for the numerics;
# raise BUDGET_S, or use ONLY, to fit it).
set -u
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
PY="${PYTHON:-python3}"
DRY="${DRY_RUN:-0}"
CARRY="${CARRY:-$PWD/.gpu_carry}"
WORK="${WORK:-/tmp/gpu_work}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_DATASETS_DISABLE_PROGRESS_BARS=1 \
    PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$LOG") 2>&1
say() { echo "[gpu_check] $*"; }
start=$(date +%s)

if [ ! -f "$CARRY/bbc.csv.gz" ] || [ ! -d "$CARRY/minilm" ]; then
    say "no carry folder at $CARRY: run 'python bench/gpu_prepare.py' here and carry .gpu_carry"
    exit 1
fi
SMOKE=()
if [ "$DRY" = 1 ]; then
    # the CPU here runs Python 3.11 and has the packages already: the 3.12 wheels are only listed
    say "DRY_RUN: CPU smoke run with tiny sizes; wheels not installed (they are for Python 3.12):"
    ls "$CARRY"/wheels/*.whl | sed 's/^/[gpu_check]   /'
    SMOKE=(--smoke)
    WORK="${WORK}_smoke"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
else
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        say "torch with CUDA is not importable by $PY: nothing to check (DRY_RUN=1 for the CPU)"
        exit 1
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$CARRY"/wheels/*.whl || { say "wheel install FAILED"; exit 1; }
    export PYTHONPATH="/tmp/site:$PYTHONPATH"  # the carried transformers 5.23 before the machine's
fi
"$PY" - <<'PY'
import importlib
for name in ("torch", "transformers", "accelerate", "datasets", "evaluate", "safetensors",
             "tokenizers", "matplotlib", "yaml", "numpy", "peft"):
    try:
        module = importlib.import_module(name)
        print(f"[gpu_check] {name} {getattr(module, '__version__', '?')}")
    except Exception as err:  # report every missing package at once
        print(f"[gpu_check] {name} MISSING ({type(err).__name__}: {err})")
PY

rm -rf "$WORK"
"$PY" bench/gpu_bench.py restore --carry "$CARRY" --work "$WORK" "${SMOKE[@]}" \
    || { say "restore FAILED"; exit 1; }
"$PY" bench/gpu_bench.py run --work "$WORK" --out "$OUT" --budget_s "${BUDGET_S:-400}" \
    --seeds "${SEEDS:-1}" ${ONLY:+--only "$ONLY"} "${SMOKE[@]}"
status=$?
say "done in $(( $(date +%s) - start )) s (exit $status); log: $LOG, results: $OUT/gpu_bench.json"
exit $status
