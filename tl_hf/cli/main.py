"""`tl-hf`, the command installed with the package (also `python -m tl_hf`, so
`accelerate launch -m tl_hf train text ...` works):

    tl-hf train text|image|audio [flags]     fine-tune (the recipes; --help lists the flags)
    tl-hf select MODALITY [--candidates A B] rank checkpoints (default: the model ladder) on your data
    tl-hf lab [flags]                        run a lab study of trials (--serve: with its page)
    tl-hf ui LAB_DIR [--port 7860]           the lab as a page: watch, queue, stop, compare
    tl-hf push OUTPUT_DIR --hub_model_id ID  push a finished run to the Hub
    tl-hf report OUTPUT_DIR                  rebuild report.html and the card of a finished run
    tl-hf predict OUTPUT_DIR --input FILE|FOLDER    predictions.csv for new inputs
    tl-hf evaluate OUTPUT_DIR --input LABELLED      eval_<name>/ (metrics.json + report.html)
    tl-hf serve OUTPUT_DIR [--port 8000]            an HTTP endpoint on 127.0.0.1
    tl-hf export OUTPUT_DIR --onnx                  OUTPUT_DIR/onnx/, checked with onnxruntime
    tl-hf doctor                             what is installed, what the embedded defaults need
    tl-hf launch [accelerate flags] SCRIPT   accelerate launch, the machines checked first

Exit status: 0 on success, 2 with one line for a usage or input error.
"""

from __future__ import annotations

import sys

from tl_hf.errors import UserError


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def train(argv: list[str]) -> int:
    """`tl-hf train MODALITY [flags]`: the recipe of that modality."""
    from tl_hf.cli.recipe import main as recipe_main

    if not argv or argv[0].startswith("-"):
        from tl_hf.modalities.base import modality_names

        return _error(f"tl-hf train needs a modality first: one of {', '.join(modality_names())}")
    return recipe_main(argv[0], argv[1:])


def select(argv: list[str]) -> int:
    """`tl-hf select MODALITY [--candidates A B] [flags]`: `tl_hf.cli.select`."""
    from tl_hf.cli.select import main as select_main

    return select_main(argv)


def lab(argv: list[str]) -> int:
    """`tl-hf lab [flags]`: `tl_hf.lab.main`, imported only when asked for."""
    try:
        from tl_hf.lab import main as lab_main
    except ImportError:
        return _error("the lab (tl_hf.lab) is not part of this tl-hf installation: update tl-hf")
    return lab_main(argv)


def ui(argv: list[str]) -> int:
    """`tl-hf ui LAB_DIR`: `tl_hf.lab.ui`, a user error as one line (exit 2)."""
    try:
        from tl_hf.lab.ui import main as ui_main
    except ImportError as err:
        return _error(
            f"tl-hf ui needs the lab and serve extras ({err}): pip install 'tl-hf[lab,serve]'"
        )
    try:
        return ui_main(argv)
    except UserError as err:
        return _error(str(err))


def push(argv: list[str]) -> int:
    """`tl-hf push OUTPUT_DIR --hub_model_id ID`: `tl_hf.cli.push`."""
    from tl_hf.cli.push import main as push_main

    return push_main(argv, prog="tl-hf push")


def report(argv: list[str]) -> int:
    """`tl-hf report OUTPUT_DIR`: rebuild the curves, diagnosis, report.html and README.md
    from the files a finished run left (an older tl-hf's folder included)."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="tl-hf report", description=report.__doc__.splitlines()[0]
    )
    parser.add_argument("output_dir", help="the --output_dir of a finished run")
    args = parser.parse_args(argv)
    root = Path(args.output_dir)
    if not (root / "all_results.json").is_file():
        return _error(
            f"{root} holds no finished run (no all_results.json): give the --output_dir of a "
            "run that finished"
        )
    from tl_hf.output.ownership import open_output_folder

    # the run's lock (not while a run writes there); only tl-hf's own files are rewritten
    try:
        folder = open_output_folder(str(root), allow_other_files=True, what="tl-hf report")
    except UserError as err:
        return _error(str(err))
    try:
        _rebuild_report(root)
    finally:
        folder.release()
    return 0


def _rebuild_report(root) -> None:
    from tl_hf.report import (
        CURVES_FILE,
        build_model_card,
        diagnose,
        load_history,
        write_diagnosis,
        write_report_html,
        write_training_curves,
    )
    from tl_hf.report.folder import read_json, read_yaml

    history = load_history(root)
    if history:
        write_training_curves(history, root / CURVES_FILE)
        config = read_yaml(root / "run_config.yaml")
        num_labels = len((read_json(root / "config.json", {}) or {}).get("id2label") or {}) or None
        write_diagnosis(
            root, diagnose(history, strategy=config.get("strategy"), num_labels=num_labels)
        )
    print(write_report_html(root))
    print(build_model_card(root))


def _infer(command: str, argv: list[str]) -> int:
    """`tl-hf predict|evaluate ...`: `tl_hf.infer`, a user error as one line (exit 2)."""
    import importlib

    module = importlib.import_module(f"tl_hf.infer.{command}")
    try:
        return getattr(module, command)(argv)
    except UserError as err:
        return _error(str(err))


def predict(argv: list[str]) -> int:
    return _infer("predict", argv)


def evaluate(argv: list[str]) -> int:
    return _infer("evaluate", argv)


def serve(argv: list[str]) -> int:
    return _infer("serve", argv)


def export(argv: list[str]) -> int:
    return _infer("export", argv)


def doctor(argv: list[str]) -> int:
    """`tl-hf doctor`: see `tl_hf.cli.doctor`."""
    from tl_hf.cli.doctor import main as doctor_main

    return doctor_main(argv)


def launch(argv: list[str]) -> int:
    """`tl-hf launch ...`: see `tl_hf.cli.launch`."""
    from tl_hf.cli.launch import main as launch_main

    return launch_main(argv)


def main(argv: list[str] | None = None) -> int:
    """Dispatch `tl-hf COMMAND ...`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {
        "train": train,
        "select": select,
        "lab": lab,
        "ui": ui,
        "push": push,
        "report": report,
        "predict": predict,
        "evaluate": evaluate,
        "serve": serve,
        "export": export,
        "doctor": doctor,
        "launch": launch,
    }
    if command not in commands:
        return _error(f"unknown command {command!r}: choose one of {', '.join(commands)}")
    return commands[command](rest)


def console() -> None:
    """The `tl-hf` console script: `main`, then the process ends (`exit_process`)."""
    from tl_hf.cli.process import exit_process

    exit_process(main())
