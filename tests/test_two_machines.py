"""Training on two "machines" (root only): two network namespaces joined by a veth pair,
`tl-hf launch` (checks, then `accelerate launch`) with
`--config_file accelerate_configs/two_machine_cpu.yaml`, machine_rank 0
and 1 and main_process_ip the first namespace's address (gloo DDP over real TCP), the text
recipe on a tiny BERT. Checks: the same metrics as one process with the same global batch,
the output written by rank 0 only, exact evaluation counts, LLRD groups intact; then rank 1 is
SIGKILLed mid-epoch: rank 0 stops with one line naming the lost rank and the resume command,
and `--resume` on both machines ends as the uninterrupted run. Cost: about 60 s (three runs;
the one-process reference is the one test_distributed compares with, made once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO
from netns import UNAVAILABLE, Namespaces
from test_distributed import COMMON, DRIVER, LOSS_TOLERANCE, one_process_reference

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE)),
]

CONFIG = os.path.join(REPO, "accelerate_configs", "two_machine_cpu.yaml")
KILL_DRIVER = os.path.join(REPO, "tests", "kill_driver.py")
STEPS_PER_EPOCH = 8  # 64 rows, global batch 8
TIMEOUT_S = 240  # every run below is bounded by this


@pytest.fixture(scope="module")
def pair():
    """Two machines: (namespaces, [(namespace, its address, its interface)] for rank 0, 1)."""
    spaces = Namespaces()
    try:
        a, b = spaces.add("r0"), spaces.add("r1")
        addr_a, addr_b, if_a, if_b = spaces.link(a, b)
        yield spaces, [(a, addr_a, if_a), (b, addr_b, if_b)]
    finally:
        spaces.close()


def run_two(pair, driver, flags, out: Path, env_rank1=None, expect=(0, 0)):
    """The same launch command on both machines; returns (logs, exit codes) per rank."""
    spaces, machines = pair
    main_ip, port = machines[0][1], 29500 + os.getpid() % 1000
    procs, logs = [], []
    for rank, (ns, _, ifname) in enumerate(machines):
        cmd = [
            # tl-hf launch: checks the main machine (rank 0: its own address, a free port;
            # rank 1: reachable in time), then becomes accelerate launch
            sys.executable, "-m", "tl_hf", "launch", "--connect_timeout", "60",
            "--config_file", CONFIG, "--machine_rank", str(rank),
            "--main_process_ip", main_ip, "--main_process_port", str(port),
            driver, "text", *flags, *COMMON, "--output_dir", str(out),
            "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": REPO,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "GLOO_SOCKET_IFNAME": ifname,
            **(env_rank1 if rank == 1 and env_rank1 else {}),
        }
        log = out.parent / f"{out.name}_machine{rank}.log"
        logs.append(log)
        with open(log, "w") as handle:
            procs.append(
                spaces.spawn(
                    ns,
                    cmd,
                    hostname=f"machine{rank}",
                    own_pids=False,  # the resume line reads the launcher from /proc
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=REPO,
                )
            )
    deadline = time.time() + TIMEOUT_S
    codes = [p.wait(timeout=max(1, deadline - time.time())) for p in procs]
    texts = [p.read_text() for p in logs]
    if expect is not None:
        assert tuple(codes) == tuple(expect), "\n\n".join(t[-3000:] for t in texts)
    return texts, codes


@pytest.fixture(scope="module")
def runs(pair, tmp_path_factory):
    _, flags, (one, _, _) = one_process_reference(tmp_path_factory, "text")  # made once
    tmp = tmp_path_factory.mktemp("two_machines")
    probes = tmp / "two_probes"
    probes.mkdir()
    os.environ["TL_HF_PROBE_DIR"] = str(probes)  # both machines write their ranks' probes here
    try:
        logs, _ = run_two(pair, DRIVER, flags, tmp / "two")
    finally:
        del os.environ["TL_HF_PROBE_DIR"]
    rows = {
        int(p.stem[4:]): [json.loads(line) for line in p.read_text().splitlines()]
        for p in probes.glob("rank*.jsonl")
    }
    two = json.loads((tmp / "two" / "all_results.json").read_text())
    return one, two, rows, logs, tmp, flags


def test_two_machines_match_one_process_60s(runs):
    one, two, probes, logs, tmp, _ = runs
    assert sorted(probes) == [0, 1], "both machines' ranks must have run"
    optimizer = [r for r in probes[0] if r["probe"] == "optimizer"][0]
    assert optimizer["world"] == 2
    assert [r["cls"] for r in probes[1] if r["probe"] == "wrapped"] == ["DistributedDataParallel"]
    for key in ("eval_loss", "test_loss"):
        assert two[key] == pytest.approx(one[key], abs=LOSS_TOLERANCE), key
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=5 * LOSS_TOLERANCE)
    for key in ("eval_accuracy", "test_accuracy", "eval_f1", "best_epoch", "train_samples"):
        assert two[key] == one[key], key
    # evaluation counts exact on both machines: every split scored whole, once per epoch
    for rank in (0, 1):
        counts = [r["n"] for r in probes[rank] if r["probe"] == "metrics"]
        assert counts == [11] * 3 + [13], (rank, counts)
    # the output folder is written by rank 0 (machine 0) only, each file once
    assert not [r for r in probes[1] if r["probe"] == "write"], "machine 1 wrote output files"
    writes = Counter(r["file"] for r in probes[0] if r["probe"] == "write")
    for name in ("all_results.json", "param_groups.json", "run_config.yaml", "README.md"):
        assert writes[name] == 1, (name, writes)
    assert "[tl-hf] model saved to" in logs[0] and "[tl-hf] model saved to" not in logs[1]
    # LLRD groups as built on the wrapped model, as written
    written = json.loads((tmp / "two" / "param_groups.json").read_text())
    assert sorted((g["lr"], g["num_params"]) for g in written) == sorted(
        (g["lr"], g["params"]) for g in optimizer["groups"]
    )
    top = max(g["depth"] for g in written)
    assert len({g["depth"] for g in written}) > 2
    for g in written:
        assert g["lr"] == pytest.approx(3e-3 * 0.8 ** (top - g["depth"]))


def test_rank1_killed_mid_epoch_names_it_and_resume_on_both_completes_60s(pair, runs):
    one, two, _, _, tmp, flags = runs
    out = tmp / "killed"
    kill_at = {"TL_HF_KILL_AT": f"step:{STEPS_PER_EPOCH + 2}"}  # epoch 2, mid-epoch
    logs, codes = run_two(pair, KILL_DRIVER, flags, out, env_rank1=kill_at, expect=None)
    assert codes[0] != 0 and codes[1] != 0, logs
    lines = [line for line in logs[0].splitlines() if "lost rank 1" in line]
    assert len(lines) == 1, logs[0][-4000:]
    line = lines[0]
    assert "lost rank 1 (machine 1 of 2, " in line and "epoch 1.25, step 10" in line, line
    assert "checkpoint-8" in line and line.endswith("--resume"), line
    assert "accelerate launch --config_file" in line and KILL_DRIVER in line, line
    assert not (out / "all_results.json").exists()
    run_two(pair, KILL_DRIVER, [*flags, "--resume"], out)
    resumed = json.loads((out / "all_results.json").read_text())
    for key in ("eval_loss", "test_loss"):
        assert resumed[key] == pytest.approx(two[key], abs=LOSS_TOLERANCE), key
    for key in ("eval_accuracy", "test_accuracy", "best_epoch", "stopped_epoch"):
        assert resumed[key] == two[key], key
