"""Shared by the tl-hf benchmark scripts: each arm runs in a fresh child process (so its peak
RSS is its own, and caches and imports start cold), back to back; the parent prints the table.

Memory is the child's peak resident set size (`ru_maxrss`): on CPU every tensor, the
optimizer state and the Python heap live there, and it is what an out-of-memory kill reads.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "PYTHONPATH": REPO,
}


def scratch_dir(prefix: str = "tl_hf_bench_") -> str:
    """A new temporary folder that is removed when this process exits (run folders, dataset
    caches: a long bench would otherwise fill /tmp), unless TL_HF_BENCH_KEEP=1 keeps it."""
    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("TL_HF_BENCH_KEEP") != "1":
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def run_arm(script: str, arm: str, extra: list[str], cache_dir: str | None = None) -> dict:
    """Run `script --arm ARM` in a child; it prints one JSON line starting with RESULT.

    `cache_dir` is the datasets cache the child uses; by default a fresh one, so nothing cached
    by an earlier arm or run helps this one."""
    env = {**os.environ, **ENV}
    env["HF_DATASETS_CACHE"] = cache_dir or scratch_dir("tl_hf_bench_cache_")
    proc = subprocess.run(
        [sys.executable, script, "--arm", arm, *extra], capture_output=True, text=True, env=env
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"arm {arm} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def report(result: dict) -> None:
    """Called in the child at the end: adds the peak RSS and prints the RESULT line."""
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def quiet() -> None:
    """Silence progress bars, and import everything any arm imports, before any clock starts:
    the arms are then timed on their work, not on which of them imported matplotlib first."""
    import datasets
    import transformers

    import tl_hf.data.load  # noqa: F401
    import tl_hf.pipeline  # noqa: F401
    import tl_hf.report  # noqa: F401
    import tl_hf.training.features  # noqa: F401
    import tl_hf.training.trainer  # noqa: F401

    for name in ("accelerate", "evaluate", "sklearn.metrics", "matplotlib.pyplot", "yaml"):
        __import__(name)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()


def table(rows: list[list], header: list[str]) -> str:
    """A Markdown table."""

    def fmt(c):
        if isinstance(c, float):
            return f"{c:.0f}" if abs(c) >= 100 else f"{c:.3g}"
        return f"{c:,}" if isinstance(c, int) else str(c)

    cells = [header] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> dict:
    """What the figures were measured on."""
    import torch
    import transformers

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": os.environ.get("OMP_NUM_THREADS", "?"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def plain_minilm(dsd, path: str | None = None, max_length: int = 128):
    """The plain-transformers side of a comparison, written as a user would: a checkpoint's
    tokenizer over `dsd` (text, label) and its classifier with the label names. `path`
    defaults to the embedded MiniLM."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if path is None:
        from tl_hf.embedded.text import minilm_path

        path = minilm_path()
    names = dsd["train"].features["label"].names
    tokenizer = AutoTokenizer.from_pretrained(path)
    dsd = dsd.map(
        lambda b: {
            **tokenizer(b["text"], truncation=True, max_length=max_length),
            "labels": b["label"],
        },
        batched=True,
        remove_columns=["text", "label"],
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    return dsd, tokenizer, model
