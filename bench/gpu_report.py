"""Print one line of a finished run for bench/gpu_check.sh: samples/s and peak GPU memory.

python bench/gpu_report.py NAME OUTPUT_DIR/all_results.json
"""

import json
import sys

name, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    r = json.load(f)
print(
    f"[gpu_check] {name}: {r.get('train_samples_per_second', float('nan')):.1f} train samples/s, "
    f"peak GPU memory {r.get('peak_memory_mb', float('nan')):.0f} MiB, {r.get('train_samples')} samples, "
    f"train_runtime {r.get('train_runtime', float('nan')):.1f} s, eval_accuracy {r.get('eval_accuracy', float('nan')):.4f}, "
    f"test_accuracy {r.get('test_accuracy', float('nan')):.4f}"
)
