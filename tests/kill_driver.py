"""Test-only entry point: runs a recipe's `main()` and SIGKILLs its own process at a chosen
point, so the kill/resume tests hit exactly the moment they name. Used by
tests/test_resume.py and bench/soak_resume.py:

    TL_HF_KILL_AT=POINT python tests/kill_driver.py text ARGS...

POINT is one of
- `data`: while the data step runs (after loading, before preprocessing);
- `step:N`: at the start of optimizer step N+1 (N steps done), i.e. mid-epoch;
- `evaluate:N`: inside the N-th evaluation (1-based), while the metrics are computed;
- `save:N`: inside the N-th checkpoint save, after the weights, before trainer_state.json
  (with --async_checkpoints, in the writer thread, while training goes on);
- `final`: after the run config, card and report are written, before the finished marker;
- `signal:NAME:N` sends SIGINT/SIGTERM to itself at step N instead of a kill (Ctrl-C tests).
Without TL_HF_KILL_AT it runs the recipe unchanged. With TL_HF_EXIT_DIR each rank writes
its exit status to `rank{RANK}.exit` there.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tl_hf.data.load as data  # noqa: E402
import tl_hf.output.save as save  # noqa: E402
import tl_hf.training.async_checkpoint as async_checkpoint  # noqa: E402
import tl_hf.training.metrics as metrics  # noqa: E402
import tl_hf.training.trainer as train  # noqa: E402
from tl_hf.cli.process import exit_process  # noqa: E402
from tl_hf.cli.recipe import main  # noqa: E402
from tl_hf.output.names import FINISHED_MARKER  # noqa: E402

# as a process started from a shell: Ctrl-C raises KeyboardInterrupt, whatever the parent set
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

POINT = os.environ.get("TL_HF_KILL_AT", "")
KIND, _, ARG = POINT.partition(":")
COUNT = {"evaluate": 0, "save": 0}


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if KIND == "data":
    _load = data.load_classification_data

    def load_then_die(*args, **kwargs):
        _load(*args, **kwargs)
        die()

    data.load_classification_data = load_then_die

if KIND in ("step", "signal"):
    name, _, at = ARG.rpartition(":") if KIND == "signal" else ("", "", ARG)
    _step = train.TLTrainer.training_step

    def step(self, *args, **kwargs):
        if self.state.global_step == int(at):
            if KIND == "step":
                die()
            os.kill(os.getpid(), getattr(signal, name))
        return _step(self, *args, **kwargs)

    train.TLTrainer.training_step = step

if KIND == "evaluate":
    _metrics = metrics.compute_metrics

    def compute_then_die(eval_pred):
        COUNT["evaluate"] += 1
        if COUNT["evaluate"] == int(ARG):
            die()
        return _metrics(eval_pred)

    metrics.compute_metrics = compute_then_die

if KIND == "save":
    _save_opt = train.TLTrainer._save_optimizer_and_scheduler

    def save_opt(self, output_dir):
        COUNT["save"] += 1
        if COUNT["save"] == int(ARG):
            die()
        return _save_opt(self, output_dir)

    train.TLTrainer._save_optimizer_and_scheduler = save_opt
    # --async_checkpoints (the default): the same moment, in the writer thread
    _write_state = async_checkpoint.write_training_state

    def write_state(output_dir, *args):
        COUNT["save"] += 1
        if COUNT["save"] == int(ARG):
            die()
        return _write_state(output_dir, *args)

    async_checkpoint.write_training_state = write_state

if KIND == "final":
    _write_json = save.write_json

    def write_json(path, data_):
        if os.path.basename(path) == FINISHED_MARKER:
            die()
        return _write_json(path, data_)

    save.write_json = write_json


if __name__ == "__main__":
    code = main(sys.argv[1], sys.argv[2:])
    if os.environ.get("TL_HF_EXIT_DIR"):  # each rank's status, which a launcher does not show
        rank = os.environ.get("RANK", "0")
        with open(os.path.join(os.environ["TL_HF_EXIT_DIR"], f"rank{rank}.exit"), "w") as f:
            f.write(str(code))
    exit_process(code)  # as the recipes end
