"""`tl-hf export OUTPUT_DIR --onnx [--output DIR] [--input FILE]`: the run's model as ONNX in
`OUTPUT_DIR/onnx/` (or `--output`), with the processor files, `config.json` (label names) and
`calibration.json` beside it, so the folder runs on its own with onnxruntime.

The exporter is `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript):
optimum's ONNX exporter (`optimum-onnx`) requires transformers < 4.58 and cannot be installed
beside transformers 5; the older TorchScript exporter (`dynamo=False`) traced the models, but
its output differed from PyTorch by 5e-3 on a tiny BERT. The batch dimension is dynamic, and
the sequence dimension of token ids and raw waveforms.

Every export is checked before it is kept: onnxruntime and PyTorch score the same inputs
(`--input`'s first rows, else built examples of two sizes) and must give the same labels and
probabilities within 1e-4; `export.json` records the figures."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from tl_hf.errors import UserError
from tl_hf.infer.loaded import LoadedRun

EXPORT_DIR = "onnx"
MODEL_FILE = "model.onnx"
TOLERANCE = 1e-4
DYNAMIC_LENGTH = ("input_ids", "attention_mask", "token_type_ids", "input_values")
OPSET = 18


def example_inputs(run: LoadedRun) -> list[dict[str, list]]:
    """Two batches of built inputs (different sizes, so the dynamic axes are exercised)."""
    import numpy as np

    column = run.modality.input_column
    rng = np.random.default_rng(0)
    if column == "text":
        return [
            {"text": ["This is wonderful!", "A second and longer sentence, to check padding."]},
            {"text": ["short", "the plot", "one more example text here"]},
        ]
    if column == "image":
        from PIL import Image

        def images(n, h, w):
            return [
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(n)
            ]

        return [{"image": images(2, 40, 56)}, {"image": images(3, 64, 48)}]
    rate = getattr(run.processor, "sampling_rate", 16000)

    def clips(n, seconds):
        return [
            {
                "array": rng.standard_normal(int(seconds * rate)).astype("float32") * 0.1,
                "sampling_rate": rate,
            }
            for _ in range(n)
        ]

    return [{"audio": clips(2, 1.0)}, {"audio": clips(3, 0.6)}]


class _Logits:
    """The classifier as a module of named tensors -> logits (what the ONNX graph computes)."""

    def __new__(cls, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(
                self,
                input_ids=None,
                attention_mask=None,
                token_type_ids=None,
                pixel_values=None,
                input_values=None,
                input_features=None,
            ):
                given = {
                    "input_ids": input_ids,
                    "attention_mask": attention_mask,
                    "token_type_ids": token_type_ids,
                    "pixel_values": pixel_values,
                    "input_values": input_values,
                    "input_features": input_features,
                }
                return self.model(**{k: v for k, v in given.items() if v is not None}).logits

        return Wrapped()


def export_onnx(run: LoadedRun, path: Path, sample: dict[str, Any]) -> None:
    """Write `run.model` as ONNX to `path`, traced on `sample` (named tensors)."""
    import warnings

    import torch

    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    shapes = {
        name: {0: batch, 1: length} if name in DYNAMIC_LENGTH else {0: batch} for name in sample
    }
    model = _Logits(run.model.float().eval().cpu())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model,
                (),
                kwargs=sample,
                input_names=list(sample),
                output_names=["logits"],
                dynamic_shapes=shapes,
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        except Exception as err:  # torch.export's many failure types: one line naming the model
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise UserError(
                f"torch.onnx could not export {type(run.model).__name__} ({type(err).__name__}: "
                f"{first[:200]}): this architecture is not exportable with this torch version"
            ) from err
    program.save(str(path))


def compare(run: LoadedRun, path: Path, batches: list[dict[str, list]]) -> dict[str, Any]:
    """Score `batches` with onnxruntime and PyTorch: labels must match, probabilities agree
    within TOLERANCE; the figures, or a `UserError` naming the largest difference."""
    import numpy as np
    import onnxruntime
    import torch

    from tl_hf.training.metrics import softmax

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    worst, count = 0.0, 0
    for inputs in batches:
        tensors = run.encode(inputs)
        with torch.no_grad():
            reference = softmax(run.model(**tensors).logits.float().numpy())
        feeds = {k: v.numpy() for k, v in tensors.items() if k in names}
        probabilities = softmax(session.run(None, feeds)[0].astype(np.float32))
        same = (probabilities.argmax(-1) == reference.argmax(-1)).all()
        worst = max(worst, float(np.abs(probabilities - reference).max()))
        count += len(reference)
        if not same or worst > TOLERANCE:
            raise UserError(
                f"the ONNX export of {type(run.model).__name__} disagrees with PyTorch (largest "
                f"probability difference {worst:.2e}, labels {'same' if same else 'differ'}): "
                "not kept; report it with the model's class"
            )
    return {"examples": count, "max_probability_difference": worst, "same_labels": True}


def _check_inputs(run: LoadedRun, source_path: str | None, rows: int) -> list[dict[str, list]]:
    if source_path is None:
        return example_inputs(run)
    from tl_hf.infer.inputs import iter_batches, open_input

    source = open_input(source_path, run.modality, run.settings)
    batches = []
    for _, batch in iter_batches(source, min(rows, 16)):
        batches.append({k: v for k, v in batch.items() if k != "label"})
        if sum(len(next(iter(b.values()))) for b in batches) >= rows:
            break
    return batches


def copy_beside(run: LoadedRun, target: Path) -> None:
    """What the folder needs to run alone: processor files, config.json, calibration.json."""
    from tl_hf.output.names import CALIBRATION_FILE

    run.processor.save_pretrained(str(target))
    run.model.config.save_pretrained(str(target))
    if (run.root / CALIBRATION_FILE).is_file():
        shutil.copyfile(run.root / CALIBRATION_FILE, target / CALIBRATION_FILE)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tl-hf export", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="the --output_dir of a finished run")
    parser.add_argument("--onnx", action="store_true", required=True, help="export to ONNX")
    parser.add_argument("--output", default=None, help=f"default: OUTPUT_DIR/{EXPORT_DIR}")
    parser.add_argument("--input", default=None, help="data whose first rows check the export")
    parser.add_argument("--check_rows", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise UserError(
            "tl-hf export needs onnx, onnxscript and onnxruntime: pip install 'tl-hf[export]'"
        ) from err
    if args.check_rows < 1:
        raise UserError(f"--check_rows {args.check_rows} must be 1 or more")
    return args


def write_export(run: LoadedRun, target: Path, checks: list[dict[str, list]], checked_on: str):
    """Export, check and write the folder under a temporary name, then rename it to `target`
    (a previous export there is replaced); nothing is kept when the check fails."""
    import torch

    from tl_hf.output.atomic import write_json

    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        export_onnx(run, staging / MODEL_FILE, run.encode(checks[0]))
        figures = compare(run, staging / MODEL_FILE, checks)
        copy_beside(run, staging)
        record = {
            "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
            "opset": OPSET,
            "model_class": type(run.model).__name__,
            "checked_on": checked_on,
            **figures,
        }
        write_json(staging / "export.json", record)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return figures


def export(argv: list[str]) -> int:
    """Export a finished run to ONNX, checked against PyTorch (see the module docstring)."""
    from tl_hf.console import say
    from tl_hf.infer.loaded import load_run, read_run_config
    from tl_hf.output.ownership import claim, open_output_folder

    args = _parse(argv)
    root = Path(args.output_dir)
    inside = args.output is None
    target = root / EXPORT_DIR if inside else Path(args.output)
    theirs = not inside and target.is_dir() and any(target.iterdir())
    if theirs and not (target / "export.json").is_file():
        raise UserError(
            f"--output {target} holds files tl-hf did not write: choose an empty or new folder"
        )
    config = read_run_config(root)
    run = load_run(root, "cpu", config, tta=0)  # the graph is the model's: one view
    checks = _check_inputs(run, args.input, args.check_rows)
    folder = None
    if inside:  # the run's lock; a user's own `onnx` entry is refused
        folder = open_output_folder(
            str(root), allow_other_files=True, would_write=[EXPORT_DIR], what="tl-hf export"
        )
    try:
        figures = write_export(run, target, checks, args.input or "built examples")
        if inside:
            claim(str(root), [EXPORT_DIR])
    finally:
        if folder is not None:
            folder.release()
    say(
        f"ONNX written to {target / MODEL_FILE}: {figures['examples']} examples, same labels, "
        f"probabilities within {figures['max_probability_difference']:.1e} of PyTorch"
    )
    views = int(config.get("tta") or 0)
    if views > 1:
        say(
            f"note: the run scores {views} test-time views (--tta); the ONNX model scores one "
            "view: average the views yourself, or use tl-hf predict"
        )
    return 0
