#!/usr/bin/env bash
# DeepSpeed ZeRO-2 and ZeRO-3 on one GPU through tl-hf (tiny BERT, text recipe, LLRD, bf16):
# each against the same run without DeepSpeed; the runs' metrics and optimizer groups go to $OUT.
#
#   HERE (once, about 17 MB into the git-ignored .gpu_carry/ds_wheels/):
#     mkdir -p .gpu_carry/ds_wheels
#     .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .gpu_carry/ds_wheels datasets==5.2.0 dill multiprocess \
#       evaluate==0.4.6 xxhash transformers==5.23.0 hjson==3.1.0 ninja==1.13.2 py-cpuinfo==9.0.0 \
#       einops==0.8.2 msgpack==1.2.4 pydantic pydantic_core annotated-types typing-inspection
#     .venv/bin/python -m pip wheel --no-deps -w .gpu_carry/ds_wheels deepspeed==0.19.8
#   THERE: bash bench/gpu_deepspeed_check.sh   (device tool, carry [".gpu_carry"]); ~3 minutes
# Then tl-hf predict on cuda vs cpu and evaluate on cuda (issue 29).
set -u
OUT="${OUT:-/tmp/gpu_ds_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_deepspeed.log") 2>&1
PY="${PYTHON:-python3}"
"$PY" -m pip install -q --no-index --no-deps --target /tmp/site .gpu_carry/ds_wheels/*.whl \
    || { echo "wheel install FAILED"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TQDM_DISABLE=1 PATH="/tmp/site/bin:$PATH"
W=/tmp/ds_work
rm -rf "$W" && mkdir -p "$W"
"$PY" - "$W" <<'PY'
import sys
sys.path.insert(0, "tests")
from conftest import make_tiny_bert, sentiment_rows, write_csv
w = sys.argv[1]
make_tiny_bert(f"{w}/bert")
rows = sentiment_rows(88)
write_csv(f"{w}/train.csv", rows[:64]); write_csv(f"{w}/val.csv", rows[64:75]); write_csv(f"{w}/test.csv", rows[75:])
import deepspeed, torch, transformers, accelerate
print("versions", deepspeed.__version__, torch.__version__, transformers.__version__, accelerate.__version__)
PY
FLAGS=(text --model_name_or_path "$W/bert" --train_file "$W/train.csv" --validation_file "$W/val.csv"
       --test_file "$W/test.csv" --strategy llrd --learning_rate 3e-3 --llrd_decay 0.8
       --num_train_epochs 3 --seed 7 --bf16 true --per_device_train_batch_size 8
       --per_device_eval_batch_size 4 --report_to none)
run() {  # name, launcher...
    local name=$1; shift
    mkdir -p "$OUT/$name.probes"
    local t0=$(date +%s)
    TL_HF_PROBE_DIR="$OUT/$name.probes" timeout 240 "$@" tests/dist_driver.py "${FLAGS[@]}" \
        --output_dir "$W/$name" > "$OUT/$name.log" 2>&1
    echo "[ds_check] $name exit $? in $(( $(date +%s) - t0 )) s"
    cp "$W/$name/all_results.json" "$OUT/$name.all_results.json" 2>/dev/null
    cp "$W/$name/param_groups.json" "$OUT/$name.param_groups.json" 2>/dev/null
    tail -5 "$OUT/$name.log"
}
run plain "$PY"
for stage in 2 3; do
    run "zero$stage" "$PY" -m accelerate.commands.launch --config_file \
        "accelerate_configs/deepspeed_zero$stage.yaml" --num_processes 1
done
"$PY" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("plain", "zero2", "zero3"):
    path = os.path.join(out, f"{name}.all_results.json")
    if os.path.exists(path):
        r = json.load(open(path))
        print(name, {k: r.get(k) for k in ("eval_loss", "test_loss", "eval_accuracy", "test_accuracy", "best_epoch")})
    else:
        print(name, "no results")
PY
# tl-hf predict / evaluate on the GPU (issue 29): the plain run scored on cuda and on cpu must
# give the same labels and probabilities within 1e-4
CLI=(-c "import sys; from tl_hf.cli.main import main; sys.exit(main(sys.argv[1:]))")
for dev in cpu cuda; do
    t0=$(date +%s)
    "$PY" "${CLI[@]}" predict "$W/plain" --input "$W/test.csv" --output "$OUT/predict_$dev.csv" \
        --device "$dev" --top_k 2 > "$OUT/predict_$dev.log" 2>&1
    echo "[ds_check] predict --device $dev exit $? in $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/predict_$dev.log"
done
"$PY" "${CLI[@]}" evaluate "$W/plain" --input "$W/test.csv" --device cuda --name gpu \
    > "$OUT/evaluate_cuda.log" 2>&1
echo "[ds_check] evaluate --device cuda exit $?"; tail -3 "$OUT/evaluate_cuda.log"
cp "$W/plain/eval_gpu/metrics.json" "$OUT/evaluate_cuda.metrics.json" 2>/dev/null
"$PY" - "$OUT" <<'PY'
import csv, json, os, sys
out = sys.argv[1]
rows = {d: list(csv.DictReader(open(os.path.join(out, f"predict_{d}.csv")))) for d in ("cpu", "cuda")}
same = all(a["label"] == b["label"] for a, b in zip(rows["cpu"], rows["cuda"]))
worst = max(abs(float(a["probability"]) - float(b["probability"])) for a, b in zip(rows["cpu"], rows["cuda"]))
print(json.dumps({"rows": len(rows["cuda"]), "same_labels": same, "max_probability_difference": worst}))
PY
