#!/usr/bin/env bash
# One prepared check for a lent GPU machine (run from the repository root):
#
#     bash bench/gpu_check.sh            # on the GPU machine; writes $OUT/gpu_check.log
#     DRY_RUN=1 bash bench/gpu_check.sh  # here, without a GPU: prints what it would run
#
# 1. Uses the machine's python3 when it imports torch with CUDA (no venv); installs any
#    wheels carried in .whl/ (packages the GPU image lacks: datasets, evaluate, the embedded
#    model/data packages) into /tmp/site first.
# 2. Runs the embedded default of each recipe (text, image, audio) in bf16 on one GPU,
#    printing training samples/s and peak GPU memory (from all_results.json).
# 3. Smoke-tests accelerate_configs/fsdp_full_shard.yaml with one process (FSDP wrapping,
#    use_orig_params, LLRD groups, saving) on the text recipe, when accelerate has FSDP.
# Each step that lacks a prerequisite says so and is skipped; the rest still run.
set -u
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
PY="${PYTHON:-python3}"
DRY="${DRY_RUN:-0}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_DATASETS_DISABLE_PROGRESS_BARS=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$LOG") 2>&1

say() { echo "[gpu_check] $*"; }
run() {  # run a command with a time limit, or print it on a dry run
    say "\$ $*"
    [ "$DRY" = 1 ] && return 0
    timeout "${STEP_LIMIT:-240}" "$@"
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    run "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if [ "$DRY" != 1 ]; then
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        say "torch with CUDA is not importable by $PY: nothing to check"; exit 1
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" - <<'PY'
import importlib
for name in ("torch", "transformers", "accelerate", "datasets", "evaluate", "timm", "torchcodec", "soundfile"):
    try:
        module = importlib.import_module(name)
        print(f"[gpu_check] {name} {getattr(module, '__version__', '?')}")
    except Exception as err:  # report every missing package at once
        print(f"[gpu_check] {name} MISSING ({type(err).__name__})")
PY

for recipe in text image audio; do
    script="recipes/${recipe}_classify.py"
    if [ ! -f "$script" ]; then say "$recipe: $script not in this checkout, skipped"; continue; fi
    out="$OUT/$recipe"
    rm -rf "$out"
    # the embedded default as shipped, only in bf16 and without the per-epoch checkpoints' disk time
    if run "$PY" "$script" --bf16 true --output_dir "$out" --save_total_limit 1 --report_to none; then
        [ "$DRY" = 1 ] || "$PY" bench/gpu_report.py "$recipe" "$out/all_results.json"
    else
        say "$recipe: FAILED (exit $?), see the log above"
    fi
done

if "$PY" -c "from torch.distributed.fsdp import FullyShardedDataParallel; import accelerate" 2>/dev/null; then
    out="$OUT/fsdp"
    rm -rf "$out"
    # one process is enough to prove the config: wrapping, use_orig_params with LLRD groups, saving
    if run "$PY" -m accelerate.commands.launch --config_file accelerate_configs/fsdp_full_shard.yaml --num_processes 1 \
        recipes/text_classify.py --bf16 true --strategy llrd --num_train_epochs 1 --max_train_samples 200 \
        --output_dir "$out" --report_to none; then
        [ "$DRY" = 1 ] || "$PY" bench/gpu_report.py "fsdp text (llrd)" "$out/all_results.json"
    else
        say "fsdp: FAILED (exit $?), see the log above"
    fi
else
    say "fsdp: torch FSDP or accelerate missing, skipped"
fi
say "log: $LOG"
