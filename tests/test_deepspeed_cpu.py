"""DeepSpeed ZeRO-2 on the CPU (deepspeed's CPU accelerator, gloo, 2 processes through
`accelerate launch --config_file accelerate_configs/deepspeed_zero2_cpu.yaml`): the text recipe
on a tiny BERT with LLRD ends with the metrics of one process with the same global batch, and
the LLRD groups survive DeepSpeed's optimizer wrapping. The one-process run is the one
test_distributed compares with (made once per session). Cost: about 20 s (one run)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest
from conftest import REPO, free_port
from test_distributed import (
    ACCELERATE_LAUNCH,
    COMMON,
    DRIVER,
    LOSS_TOLERANCE,
    one_process_reference,
)

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        importlib.util.find_spec("deepspeed") is None,
        reason="needs deepspeed (make setup installs it)",
    ),
]

CONFIG = os.path.join(REPO, "accelerate_configs", "deepspeed_zero2_cpu.yaml")


def test_deepspeed_zero2_on_cpu_matches_one_process_20s(tmp_path, tmp_path_factory):
    _, flags, (one, _, _) = one_process_reference(tmp_path_factory, "text")
    probes = tmp_path / "probes"
    probes.mkdir()
    out = tmp_path / "zero2"
    cmd = [
        *ACCELERATE_LAUNCH, "--config_file", CONFIG, "--main_process_port", str(free_port()),
        DRIVER, "text", *flags, *COMMON,
        "--output_dir", str(out), "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4",
    ]  # fmt: skip
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "TL_HF_NO_DS_SHM_BUILD": "1",  # an inference-only kernel's compile (dist_driver.py)
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": REPO,
        "TL_HF_PROBE_DIR": str(probes),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    two = json.loads((out / "all_results.json").read_text())
    for key in ("eval_loss", "test_loss"):
        assert two[key] == pytest.approx(one[key], abs=LOSS_TOLERANCE), key
    for key in ("eval_accuracy", "test_accuracy", "best_epoch", "train_samples"):
        assert two[key] == one[key], key
    rows = [json.loads(line) for line in (probes / "rank0.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in probes.glob("rank*.jsonl")) == ["rank0.jsonl", "rank1.jsonl"]
    wrapped = [r["cls"] for r in rows if r["probe"] == "wrapped"]
    assert wrapped == ["DeepSpeedEngine"], wrapped
    optimizer = [r for r in rows if r["probe"] == "optimizer"][0]
    written = json.loads((out / "param_groups.json").read_text())
    assert optimizer["world"] == 2 and len({g["depth"] for g in written}) > 2
    assert sorted((g["lr"], g["num_params"]) for g in written) == sorted(
        (g["lr"], g["params"]) for g in optimizer["groups"]
    )
