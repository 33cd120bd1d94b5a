"""The GPU comparison that bench/gpu_check.sh runs: plain `transformers.Trainer` vs tl-hf on the
same work, each arm in its own process, plus a bare bf16 loop as an anchor and a short
torch.profiler summary; prints one table with ratios and model-FLOPs utilisation (MFU).

    python bench/gpu_bench.py restore --carry .gpu_carry --work /tmp/gpu_work [--smoke]
    python bench/gpu_bench.py run --work /tmp/gpu_work [--smoke] [--budget_s 420]

`restore` turns the carried files into models: MiniLM cast back to float32, and a
BERT-base-size classifier (12 layers, hidden 768) with random weights from a config and
MiniLM's tokenizer. `run` runs the arms below and prints the table; `--smoke` runs the same
flow on the CPU with tiny sizes (a 2-layer stand-in for BERT-base, a few steps) to prove it
end to end where there is no GPU.

Arms (bf16, batch 32, sequence 128; no evaluation or checkpoints during the full fine-tunes):
- `{minilm,bertbase}_{plain,tlhf,fast}`: 300 steps of full fine-tuning; `fast` is tl-hf with
  the levers under test (--bf16_weights, --logging_nan_inf_filter false: no host sync per
  step, --eval_batch_scale 4, two loader workers); `minilm_compile` adds --torch_compile
  (compile time inside the training time);
- `{minilm,bertbase}_bare`: the anchor, a bare loop over batches padded once and kept on the
  GPU, fused AdamW, the same schedule and clipping, bf16 autocast;
- `frozen_{plain,cached,cached_trainer}`: BERT-base size, frozen backbone, 10 epochs,
  evaluation every epoch: plain with requires_grad off, tl-hf cached features with the tight
  head loop, and with the Trainer's loop;
- `profile`: torch.profiler over 10 tl-hf BERT-base steps: GPU busy time, kernel launches,
  autocast copies, the top operators;
- `epochs_{sync,async}`: the text default's loop, MiniLM llrd for 5 epochs with evaluation and
  a checkpoint every epoch and the best one restored, checkpoints written by the Trainer
  (`--async_checkpoints false`) or in the background: evaluation + checkpoint share of train;
- `fsdp_lora`: `accelerate launch` with accelerate_configs/fsdp_full_shard.yaml on one GPU,
  the text recipe with `--strategy lora`: the merged model and the adapter are checked (GPU only).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import plain_minilm, scratch_dir, table  # noqa: E402

H200_BF16_PEAK = 989.4e12  # dense bf16 FLOP/s of an H100/H200 SXM
SEED = int(os.environ.get("GPU_BENCH_SEED", "42"))  # `run --seeds` sets it per repeat
BERT_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


def sizes(smoke: bool) -> dict:
    """Steps, batch, sequence, epochs and rows per class: the real ones, or the CPU smoke's."""
    if smoke:
        return dict(steps=3, batch=4, seq=32, epochs=2, per_class=(8, 4, 4), profile_steps=2)
    return dict(steps=300, batch=32, seq=128, epochs=10, per_class=None, profile_steps=10)


# ---- restore: carried files -> models
def restore(carry: str, work: str, smoke: bool) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    minilm = os.path.join(work, "minilm")
    os.makedirs(minilm, exist_ok=True)
    source = os.path.join(carry, "minilm")
    for name in os.listdir(source):
        if name != "model.bf16.safetensors":
            shutil.copy(os.path.join(source, name), minilm)
    weights = load_file(os.path.join(source, "model.bf16.safetensors"))
    save_file(
        {k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
        os.path.join(minilm, "model.safetensors"),
        metadata={"format": "pt"},
    )
    shutil.copy(os.path.join(carry, "bbc.csv.gz"), os.path.join(work, "bbc.csv.gz"))
    bertbase = os.path.join(work, "bertbase")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    tokenizer.save_pretrained(bertbase)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, num_labels=5, **(TINY if smoke else BERT_BASE)
    )
    BertForSequenceClassification(config).save_pretrained(bertbase)
    print(f"[gpu_bench] restored MiniLM (float32) and a BERT-base-size model in {work}")


def load_bbc(work: str, per_class: tuple[int, int, int] | None):
    """BBC News from the carried CSV as a DatasetDict (text, label), optionally fewer rows."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rows: dict[str, list[tuple[str, str]]] = {}
    with gzip.open(os.path.join(work, "bbc.csv.gz"), "rt", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            rows.setdefault(record["split"], []).append((record["label"], record["text"]))
    names = sorted({label for split in rows.values() for label, _ in split})
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    out = {}
    for i, split in enumerate(("train", "validation", "test")):
        kept, seen = [], {}
        for label, text in rows[split]:
            if per_class is None or seen.get(label, 0) < per_class[i]:
                seen[label] = seen.get(label, 0) + 1
                kept.append((label, text))
        out[split] = Dataset.from_dict(
            {"text": [t for _, t in kept], "label": [names.index(lb) for lb, _ in kept]},
            features=features,
        )
    return DatasetDict(out)


# ---- arms (each runs in its own process)
def _device_kwargs() -> dict:
    import torch

    return {} if torch.cuda.is_available() else {"use_cpu": True}


def _train_kwargs(s: dict) -> dict:
    return dict(
        learning_rate=5e-5,
        max_steps=s["steps"],
        per_device_train_batch_size=s["batch"],
        per_device_eval_batch_size=64,
        warmup_steps=0.1,
        weight_decay=0.01,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=SEED,
        bf16=True,
        logging_steps=10,
        **_device_kwargs(),
    )


def arm_plain(work: str, model: str, s: dict, frozen: bool = False) -> dict:
    import numpy as np
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    set_seed(SEED)
    dsd, tokenizer, net = plain_minilm(
        load_bbc(work, s["per_class"]), os.path.join(work, model), s["seq"]
    )
    kwargs = _train_kwargs(s)
    if frozen:
        for param in net.bert.parameters():
            param.requires_grad_(False)
        kwargs.update(learning_rate=1e-3, eval_strategy="epoch", num_train_epochs=s["epochs"])
        kwargs.pop("max_steps")
    out = scratch_dir()
    trainer = Trainer(
        model=net,
        args=TrainingArguments(output_dir=out, **kwargs),
        train_dataset=dsd["train"],
        eval_dataset=dsd["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=lambda p: {
            "accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())
        },
    )
    train = trainer.train().metrics
    test = trainer.predict(dsd["test"]).metrics
    trainer.save_model(out)
    return {
        "train_s": train["train_runtime"],
        "samples_per_s": train["train_samples_per_second"],
        "test_accuracy": test["test_accuracy"],
    }


def arm_tlhf(work: str, model: str, s: dict, mode: str = "tlhf", frozen: bool = False) -> dict:
    from tl_hf.pipeline import train_text_classifier

    kwargs = _train_kwargs(s)
    kwargs.update(early_stopping_patience=0, load_best_model_at_end=False, profile=True)
    kwargs.update(strategy="frozen" if frozen else "full", max_seq_length=s["seq"])
    if frozen:
        kwargs.update(learning_rate=1e-3, eval_strategy="epoch", num_train_epochs=s["epochs"])
        kwargs.pop("max_steps")
        kwargs["fast_head"] = mode != "cached_trainer"
    if mode in ("fast", "compile"):
        kwargs.update(bf16_weights=True, logging_nan_inf_filter=False, eval_batch_scale=4)
        kwargs.update(dataloader_num_workers=0 if s["steps"] < 10 else 2)
    if mode == "compile":
        kwargs["torch_compile"] = True
    if mode.startswith("epochs"):  # the text default's loop: evaluation + checkpoint each epoch
        kwargs.pop("max_steps")
        kwargs.update(strategy="llrd", learning_rate=1e-4, num_train_epochs=s["epochs"] // 2)
        kwargs.update(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
        kwargs["async_checkpoints"] = mode == "epochs_async"
    result = train_text_classifier(
        dataset=load_bbc(work, s["per_class"]),
        model_name_or_path=os.path.join(work, model),
        output_dir=scratch_dir(),
        **kwargs,
    )
    with open(os.path.join(result.output_dir, "timings.json")) as f:
        timings = json.load(f)
    m = result.metrics
    return {
        "train_s": m["train_runtime"],
        "samples_per_s": m["train_samples_per_second"],
        "test_accuracy": m["test_accuracy"],
        "features_s": timings.get("feature cache", 0.0),
        "cached": bool(m.get("cached_features")),
        "timings": timings,
    }


def arm_fsdp_lora(work: str, s: dict) -> dict:
    """LoRA under FSDP through the real launcher: `accelerate launch` with
    accelerate_configs/fsdp_full_shard.yaml on one GPU (FSDP1, full shard, use_orig_params), the
    text recipe on MiniLM, 2 epochs with evaluation and checkpoints. Checks what the CPU tests
    cannot (Accelerate refuses FSDP without a GPU): the run finishes, the merged model holds no
    adapter keys and reloads without peft, the adapter folder is there."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    if not torch.cuda.is_available():
        raise SystemExit("fsdp_lora needs a GPU (Accelerate refuses FSDP on the CPU)")
    repo = os.path.dirname(HERE)
    data = os.path.join(work, "bbc_fsdp")
    load_bbc(work, s["per_class"]).save_to_disk(data)
    out = scratch_dir(prefix="gpu_bench_fsdp_")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    cmd += [
        os.path.join(repo, "accelerate_configs", "fsdp_full_shard.yaml"),
        "--num_processes",
        "1",
    ]
    cmd += [os.path.join(repo, "recipes", "text_classify.py"), "--model_name_or_path"]
    cmd += [os.path.join(work, "minilm"), "--dataset_name", data, "--strategy", "lora"]
    cmd += ["--num_train_epochs", "2", "--bf16", "true", "--max_seq_length", str(s["seq"])]
    cmd += [
        "--per_device_train_batch_size",
        str(s["batch"]),
        "--output_dir",
        out,
        "--seed",
        str(SEED),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-2000:] + done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"accelerate launch exited {done.returncode}")
    with open(os.path.join(out, "all_results.json")) as f:
        m = json.load(f)
    keys = load_file(os.path.join(out, "model.safetensors"))
    plain = not any("lora_" in k or "modules_to_save" in k for k in keys)
    AutoModelForSequenceClassification.from_pretrained(out)  # loads without peft
    adapter = os.path.isfile(os.path.join(out, "adapter", "adapter_model.safetensors"))
    print(f"[gpu_bench] fsdp_lora: merged model plain {plain}, adapter written {adapter}")
    if not (plain and adapter):
        raise SystemExit("fsdp_lora: the merged model or the adapter is wrong")
    return {
        "train_s": m["train_runtime"],
        "samples_per_s": m["train_samples_per_second"],
        "test_accuracy": m["test_accuracy"],
    }


def arm_bare(work: str, model: str, s: dict) -> dict:
    """The anchor: padded once, on the device, fused AdamW, the Trainer's schedule and clipping."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_scheduler

    torch.manual_seed(SEED)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dsd = load_bbc(work, s["per_class"])
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(work, model))
    enc = tokenizer(
        list(dsd["train"]["text"]),
        truncation=True,
        max_length=s["seq"],
        padding="max_length",
        return_tensors="pt",
    )
    data = {k: v.to(device) for k, v in enc.items()}
    labels = torch.tensor(list(dsd["train"]["label"]), device=device)
    net = AutoModelForSequenceClassification.from_pretrained(
        os.path.join(work, model), num_labels=5
    ).to(device)
    decay = [
        p for n, p in net.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n
    ]
    rest = [p for n, p in net.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
        lr=5e-5,
        fused=cuda,
    )
    steps, batch = s["steps"], s["batch"]
    scheduler = get_scheduler("linear", optimizer, math.ceil(0.1 * steps), steps)
    n = len(labels)
    net.train()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(SEED)
    order = torch.randperm(n, generator=generator).to(device)
    position = 0
    for _ in range(steps):
        if position + batch > n:
            order, position = torch.randperm(n, generator=generator).to(device), 0
        index = order[position : position + batch]
        position += batch
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = net(**{k: v[index] for k, v in data.items()}, labels=labels[index])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    return {"train_s": train_s, "samples_per_s": steps * batch / train_s, "test_accuracy": None}


def arm_profile(work: str, s: dict) -> dict:
    """torch.profiler over a few tl-hf BERT-base steps (after warm-up steps)."""
    import torch
    from transformers import TrainerCallback

    import tl_hf.pipeline as pipeline

    n = s["profile_steps"]
    summary: dict = {}

    class Profile(TrainerCallback):
        def __init__(self):
            self.prof = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == n and self.prof is None:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.prof = torch.profiler.profile(activities=activities)
                self.prof.__enter__()
                self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self.prof is not None and state.global_step == 2 * n:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                wall = time.perf_counter() - self.start
                self.prof.__exit__(None, None, None)
                summary.update(_profile_summary(self.prof, wall, n))
                self.prof = None

    original = pipeline.build_callbacks

    def with_profile(*a, **k):
        callbacks, early = original(*a, **k)
        return [Profile(), *callbacks], early

    pipeline.build_callbacks = with_profile
    s = {**s, "steps": 2 * n + 1}
    result = arm_tlhf(work, "bertbase", s)
    result["profile"] = summary
    return result


def _profile_summary(prof, wall: float, steps: int) -> dict:
    events = prof.key_averages()
    device_us = sum(
        getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in events
    )
    launches = sum(
        e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel"))
    )
    copies = sum(e.count for e in events if e.key == "aten::_to_copy")
    syncs = sum(
        e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize")
    )
    try:  # the device column's name changed across torch versions
        top = events.table(
            sort_by="self_device_time_total" if device_us else "self_cpu_time_total", row_limit=8
        )
    except (AttributeError, KeyError, ValueError):
        top = events.table(sort_by="self_cuda_time_total", row_limit=8)
    return {
        "wall_ms_per_step": 1000 * wall / steps,
        "device_busy_ms_per_step": device_us / 1000 / steps,
        "kernel_launches_per_step": launches / steps,
        "to_copy_per_step": copies / steps,
        "syncs_per_step": syncs / steps,
        "top": top,
    }


# In the order they run: the comparisons the targets are about first, so a run that hits its
# time budget loses the extras, not them.
ARMS = {
    "minilm_plain": lambda w, s: arm_plain(w, "minilm", s),
    "minilm_tlhf": lambda w, s: arm_tlhf(w, "minilm", s),
    "bertbase_plain": lambda w, s: arm_plain(w, "bertbase", s),
    "bertbase_tlhf": lambda w, s: arm_tlhf(w, "bertbase", s),
    "frozen_plain": lambda w, s: arm_plain(w, "bertbase", s, frozen=True),
    "frozen_cached": lambda w, s: arm_tlhf(w, "bertbase", s, "cached", frozen=True),
    "minilm_fast": lambda w, s: arm_tlhf(w, "minilm", s, "fast"),
    "bertbase_fast": lambda w, s: arm_tlhf(w, "bertbase", s, "fast"),
    "minilm_bare": lambda w, s: arm_bare(w, "minilm", s),
    "bertbase_bare": lambda w, s: arm_bare(w, "bertbase", s),
    "profile": lambda w, s: arm_profile(w, s),
    "frozen_cached_trainer": lambda w, s: arm_tlhf(w, "bertbase", s, "cached_trainer", True),
    "epochs_sync": lambda w, s: arm_tlhf(w, "minilm", s, "epochs_sync"),
    "epochs_async": lambda w, s: arm_tlhf(w, "minilm", s, "epochs_async"),
    "fsdp_lora": arm_fsdp_lora,
    "minilm_compile": lambda w, s: arm_tlhf(w, "minilm", s, "compile"),
}


def run_one(name: str, work: str, smoke: bool) -> None:
    """In the child: run one arm, add the end-to-end time (from the process's start) and
    print a RESULT line."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    result = ARMS[name](work, sizes(smoke))
    from tl_hf.output.timing import process_age

    result["wall_s"] = process_age() or float("nan")
    import torch

    if torch.cuda.is_available():
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


# ---- run: every arm in a child process, then the table
def flops_per_sample(path: str, seq: int) -> float:
    """Training FLOPs of one sequence through a BERT encoder: 3 x forward, forward = 2 x
    non-embedding parameters x tokens + the attention matmuls (4 x layers x seq^2 x hidden)."""
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    h, layers, ff = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    per_layer = 4 * h * h + 2 * h * ff  # attention projections + feed-forward weights
    forward = 2 * layers * per_layer * seq + 4 * layers * seq * seq * h
    return 3 * forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["restore", "run", "arm"])
    parser.add_argument("name", nargs="?", help="arm name (command arm)")
    parser.add_argument("--carry", default=os.path.join(os.path.dirname(HERE), ".gpu_carry"))
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "gpu_work"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--budget_s", type=float, default=400, help="start no arm after this")
    parser.add_argument("--arm_timeout_s", type=float, default=150)
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="with N > 1, the arms with a test accuracy run again with seeds 43.. (after the "
        "budget's first pass) and an accuracy table per seed is printed",
    )
    parser.add_argument("--only", default="", help="comma-separated arm names")
    parser.add_argument("--out", default=os.environ.get("OUT", tempfile.gettempdir()))
    args = parser.parse_args()
    if args.command == "restore":
        restore(args.carry, args.work, args.smoke)
        return
    if args.command == "arm":
        run_one(args.name, args.work, args.smoke)
        return
    chosen = [a for a in (args.only.split(",") if args.only else ARMS) if a]
    if args.smoke:  # no compiler toolchain needed here; Accelerate refuses FSDP on the CPU
        chosen = [a for a in chosen if a not in ("minilm_compile", "fsdp_lora")]
    results, start = {}, time.perf_counter()
    passes = [(name, SEED) for name in chosen]
    passes += [
        (name, SEED + k)
        for k in range(1, args.seeds)
        for name in chosen
        if not name.endswith(("_bare", "_compile")) and name != "profile"
    ]
    for name, seed in passes:
        key = name if seed == SEED else f"{name}@{seed}"
        if time.perf_counter() - start > args.budget_s:
            print(f"[gpu_bench] {key}: skipped (past the {args.budget_s:.0f} s budget)", flush=True)
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, os.path.abspath(__file__), "arm", name, "--work", args.work]
        # a fresh datasets cache per arm: nothing one arm cached (features) helps another
        env = {**os.environ, "HF_DATASETS_CACHE": scratch_dir(prefix="gpu_bench_cache_")}
        env["GPU_BENCH_SEED"] = str(seed)
        try:
            proc = subprocess.run(
                cmd + (["--smoke"] if args.smoke else []),
                capture_output=True,
                text=True,
                env=env,
                timeout=args.arm_timeout_s,
            )
        except subprocess.TimeoutExpired:
            print(f"[gpu_bench] {key}: TIMED OUT after {args.arm_timeout_s:.0f} s", flush=True)
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"[gpu_bench] {key}: FAILED (exit {proc.returncode})", flush=True)
            print((proc.stdout[-1500:] + proc.stderr[-2500:]).rstrip(), flush=True)
            continue
        results[key] = r = json.loads(lines[-1][len("RESULT ") :])
        print(
            f"[gpu_bench] {key}: train {r['train_s']:.2f} s, {r['samples_per_s']:.0f} samples/s, "
            f"end to end {r['wall_s']:.1f} s, test accuracy {r.get('test_accuracy')} "
            f"({time.perf_counter() - t0:.0f} s with start-up)",
            flush=True,
        )
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    print_tables(results, args.work, sizes(args.smoke))


def print_tables(results: dict, work: str, s: dict) -> None:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    peak = H200_BF16_PEAK if any(x in gpu for x in ("H100", "H200")) else None
    print(f"\n{gpu}, torch {torch.__version__}; bf16, batch {s['batch']}, sequence {s['seq']}\n")
    rows = []
    for model in ("minilm", "bertbase"):
        base = results.get(f"{model}_plain")
        flops = flops_per_sample(os.path.join(work, model), s["seq"])
        for arm in ("plain", "tlhf", "fast", "compile", "bare"):
            r = results.get(f"{model}_{arm}")
            if r is None:
                continue
            tflops = r["samples_per_s"] * flops / 1e12
            rows.append(
                [
                    f"{model} {arm}",
                    r["train_s"],
                    r["samples_per_s"],
                    r["samples_per_s"] / base["samples_per_s"] if base else "",
                    r["wall_s"],
                    r["wall_s"] - base["wall_s"] if base else "",
                    tflops,
                    f"{100 * tflops * 1e12 / peak:.1f}%" if peak else "-",
                    "-" if r.get("test_accuracy") is None else f"{r['test_accuracy']:.3f}",
                ]
            )
    header = ["arm", "train (s)", "samples/s", "x plain", "end to end (s)", "e2e - plain (s)"]
    print(table(rows, header + ["TFLOP/s", "MFU", "test acc"]))
    base = results.get("frozen_plain")
    rows = []
    for arm in ("plain", "cached", "cached_trainer"):
        r = results.get(f"frozen_{arm}")
        if r is None:
            continue
        work_s = r["train_s"] + r.get("features_s", 0.0)
        rows.append(
            [
                f"frozen {arm}",
                r.get("features_s", 0.0),
                r["train_s"],
                base["train_s"] / work_s if base else "",
                r["wall_s"],
                base["wall_s"] / r["wall_s"] if base else "",
                f"{r['test_accuracy']:.3f}",
            ]
        )
    if rows:
        print(f"\nBERT-base size frozen, {s['epochs']} epochs, evaluation every epoch\n")
        print(
            table(
                rows,
                [
                    "arm",
                    "features (s)",
                    "train (s)",
                    "plain train / (features + train) (target >= 10)",
                    "end to end (s)",
                    "e2e speed-up (target >= 2)",
                    "test acc",
                ],
            )
        )
    rows = []
    for arm in ("sync", "async"):
        r = results.get(f"epochs_{arm}")
        if r is None:
            continue
        t = r["timings"]
        evaluation = t.get("evaluation during training", 0.0)
        saves = t.get("checkpoints", 0.0)
        rows.append(
            [
                f"checkpoints {arm}",
                r["train_s"],
                evaluation,
                saves,
                f"{100 * (evaluation + saves) / r['train_s']:.1f}%",
                f"{r['test_accuracy']:.3f}",
            ]
        )
    if rows:
        print(f"\nMiniLM llrd, {s['epochs'] // 2} epochs, evaluation + checkpoint every epoch\n")
        header = ["arm", "train (s)", "evaluation (s)", "checkpoints (s)"]
        print(table(rows, [*header, "share of train (target <= 10%)", "test acc"]))
    seeded = sorted({k.split("@")[0] for k in results if "@" in k})
    if seeded:
        print("\ntest accuracy per seed (numerics of each path vs plain)\n")
        seeds = sorted({int(k.split("@")[1]) for k in results if "@" in k} | {SEED})
        rows = [
            [name]
            + [
                "-"
                if results.get(name if sd == SEED else f"{name}@{sd}") is None
                else f"{results[name if sd == SEED else f'{name}@{sd}']['test_accuracy']:.3f}"
                for sd in seeds
            ]
            for name in seeded
        ]
        print(table(rows, ["arm", *(f"seed {sd}" for sd in seeds)]))
    p = results.get("profile", {}).get("profile")
    if p:
        print(
            f"\nprofile, tl-hf BERT-base steps: {p['wall_ms_per_step']:.1f} ms per step, device busy "
            f"{p['device_busy_ms_per_step']:.1f} ms, {p['kernel_launches_per_step']:.0f} kernel "
            f"launches, {p['to_copy_per_step']:.0f} aten::_to_copy, {p['syncs_per_step']:.1f} "
            f"stream/device syncs per step\n{p['top']}"
        )
    for name, r in results.items():
        if r.get("timings") and "@" not in name:
            phases = {k: v for k, v in r["timings"].items() if isinstance(v, float) and v > 0.05}
            print(
                f"[gpu_bench] {name} phases (s): "
                + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            )


if __name__ == "__main__":
    main()
