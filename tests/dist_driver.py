"""Test-only launcher target: runs a recipe's `main()` with probes that record, per rank,
what the library cannot report itself. Used by tests/test_distributed.py:

    accelerate launch --config_file accelerate_configs/cpu_2proc.yaml tests/dist_driver.py text ARGS...

Each rank appends JSON lines to `$TL_HF_PROBE_DIR/rank{RANK}.jsonl`:
- `{"probe": "metrics", "n": N}`: the number of predictions `compute_metrics` scored (the
  Trainer gathers them over the ranks, so N must equal the split size on every rank);
- `{"probe": "optimizer", ...}`: the optimizer's groups (lr, weight decay, parameter count)
  once built, the world size, and the trainable parameter count of the unwrapped model;
- `{"probe": "wrapped", "cls": ...}`: the class of the model the training step received;
- `{"probe": "write", "what": ..., "file": ...}`: every output file the library wrote.

With TL_HF_NO_DS_SHM_BUILD=1 (tests/test_deepspeed_cpu.py) DeepSpeed's CPU backend does not
JIT-compile its shared-memory all-reduce kernel at start-up (C++, 40-80 s on 2 cores, again
for every new venv path: a clean CI clone always pays it). Only DeepSpeed's inference
all-reduce uses that kernel (deepspeed/comm/torch.py: inference_all_reduce); ZeRO training's
all_reduce goes to torch.distributed (gloo) either way, so the run trains as without this.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tl_hf.output.save as save  # noqa: E402
import tl_hf.report as report  # noqa: E402
import tl_hf.report.history as history  # noqa: E402
import tl_hf.training.metrics as metrics  # noqa: E402
import tl_hf.training.trainer as train  # noqa: E402
from tl_hf.cli.process import exit_process  # noqa: E402
from tl_hf.cli.recipe import main  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))

if os.environ.get("TL_HF_NO_DS_SHM_BUILD") == "1":
    import importlib

    # the module itself: `import deepspeed.comm.torch as m` binds the package's attribute
    # `torch`, which is PyTorch (deepspeed.comm imports it), and the patch missed
    ds_comm = importlib.import_module("deepspeed.comm.torch")
    ds_comm.build_shm_op = lambda: None


def record(**row) -> None:
    with open(os.path.join(os.environ["TL_HF_PROBE_DIR"], f"rank{RANK}.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def recording(module, name: str, file_of) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        record(probe="write", what=name, file=os.path.basename(str(file_of(*args, **kwargs))))
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


recording(save, "write_json", lambda path, *a, **k: path)
recording(save, "write_run_config", lambda path, *a, **k: path)
recording(history, "atomic_write", lambda path, *a, **k: path)
recording(report, "write_diagnosis", lambda out, *a, **k: os.path.join(out, report.DIAGNOSIS_FILE))
recording(report, "build_model_card", lambda out, *a, **k: os.path.join(out, "README.md"))
recording(report, "write_report_html", lambda out, *a, **k: os.path.join(out, "report.html"))

_compute_metrics = metrics.compute_metrics


def compute_metrics(eval_pred):
    record(probe="metrics", n=len(eval_pred.label_ids))
    return _compute_metrics(eval_pred)


metrics.compute_metrics = compute_metrics

_create_optimizer = train.TLTrainer.create_optimizer
_training_step = train.TLTrainer.training_step


def create_optimizer(self, model=None):
    import torch.distributed as dist

    optimizer = _create_optimizer(self, model)
    unwrapped = self.accelerator.unwrap_model(self.model)
    record(
        probe="optimizer",
        world=dist.get_world_size() if dist.is_initialized() else 1,
        trainable=sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        groups=[
            {
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
                "params": sum(p.numel() for p in g["params"]),
            }
            for g in optimizer.param_groups
        ],
    )
    return optimizer


def training_step(self, model, *args, **kwargs):
    if not getattr(self, "_probed_wrap", False):
        self._probed_wrap = True
        record(probe="wrapped", cls=type(model).__name__)
    return _training_step(self, model, *args, **kwargs)


train.TLTrainer.create_optimizer = create_optimizer
train.TLTrainer.training_step = training_step

if __name__ == "__main__":
    exit_process(main(sys.argv[1], sys.argv[2:]))  # as the recipes end
