"""Where a run's arguments travel: every call of a tl_hf function that receives the run's
arguments (a `RunArgs`, or the `Plan` that holds them), in call order, from `pipeline.run` on.

    python bench/trace_args.py [--strategy lp_ft]

Prints, for `RunArgs`, for it or one of its parts (its dataclasses, the strategy's and data's
settings; not `TrainingArguments`, which the Trainer hands to its callbacks) and for `Plan`: the modules that receive it, how many visits (a run of
consecutive calls in one module counts once) and how many of them return to a module the
object had already left. A tiny BERT and 60 sentiment rows, 2 epochs, on the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)


def visits(modules: list[str]) -> tuple[int, int, Counter]:
    """(visits, returns to a module left before, calls per module) of a call sequence."""
    runs = [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]
    seen, returns = set(), 0
    for module in runs:
        returns += module in seen
        seen.add(module)
    return len(runs), returns, Counter(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="lp_ft")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from conftest import make_tiny_bert, sentiment_rows, write_csv

    from tl_hf.config import RunArgs, parse_args

    try:
        from tl_hf.pipeline import Plan
    except ImportError:  # before the restructuring: no Plan to follow
        Plan = ()
    from tl_hf.pipeline import run

    root = tempfile.mkdtemp(prefix="tl_hf_trace_")
    model = make_tiny_bert(os.path.join(root, "bert"))
    data = write_csv(os.path.join(root, "train.csv"), sentiment_rows(60))
    argv = ["--model_name_or_path", model, "--train_file", data, "--num_train_epochs", "2"]
    argv += ["--strategy", options.strategy, "--use_cpu", "--output_dir", os.path.join(root, "o")]
    args = parse_args("text", argv)
    seen: dict[str, list[str]] = {"RunArgs": [], "RunArgs or a part of it": [], "Plan": []}
    # its parts: the toolkit's dataclasses and settings (not TrainingArguments, which the
    # Trainer itself hands to every callback at every step)
    parts = tuple(
        type(v)
        for k, v in vars(args).items()
        if k != "training" and (hasattr(v, "__dataclass_fields__") or hasattr(v, "shared"))
    )

    def profile(frame, event, arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("tl_hf"):
            return
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        values = [frame.f_locals.get(n) for n in names if n != "self"]  # passed on, not used
        if any(isinstance(v, RunArgs) for v in values):
            seen["RunArgs"].append(module)
        if any(isinstance(v, (RunArgs, *parts)) for v in values):
            seen["RunArgs or a part of it"].append(module)
        if Plan and any(isinstance(v, Plan) for v in values):
            seen["Plan"].append(module)

    sys.setprofile(profile)
    try:
        run(args)
    finally:
        sys.setprofile(None)
    for kind, modules in seen.items():
        n, back, per = visits(modules)
        print(
            f"{kind}: {len(per)} modules, {n} visits, {back} returns to a module left before "
            f"({len(modules)} calls)"
        )
        for module, calls in per.most_common():
            print(f"    {calls:4d}  {module}")


if __name__ == "__main__":
    main()
