"""A finished run folder loaded for inference: the model, the processor built as training
built it, the modality's preprocessing and collation, the label names and the temperature
fitted at the end of training (`calibration.json`; 1.0 when the run has none)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tl_hf.errors import UserError
from tl_hf.output.names import CALIBRATION_FILE, FINISHED_MARKER, RUN_CONFIG_FILE


@dataclass
class LoadedRun:
    """What every inference command needs from a run folder."""

    root: Path
    modality: Any
    model: Any
    processor: Any
    settings: Any  # the run's flags (run_config.yaml) as attributes, for the modality's functions
    names: list[str]
    temperature: float
    device: Any
    tta: int = 0  # test-time views (`--tta`, as the run recorded it or overridden): 0 off
    tta_flip: bool = False

    def __post_init__(self):
        self.preprocess = self.modality.make_preprocess(self.processor, self.settings)
        self.collate = self.modality.build_collator(self.processor)

    def encode(self, inputs: dict[str, list]) -> dict[str, Any]:
        """The tensors the model takes for raw inputs given by standard column name
        (`{"text": [...]}`, `{"image": [...]}`, `{"audio": [...]}`): the modality's preprocess
        and collate, on the CPU."""
        column = next(iter(inputs.values()))
        encoded = self.preprocess({**inputs, "label": [0] * len(column)})
        batch = self.collate([{k: v[i] for k, v in encoded.items()} for i in range(len(column))])
        batch.pop("labels", None)
        return dict(batch)

    @property
    def views_label(self) -> str:
        """What the console says of `--tta`: ", N test-time views averaged", or nothing."""
        return f", {self.tta} test-time views averaged" if self.tta else ""

    def logits(self, inputs: dict[str, list]):
        """Logits (a float32 CPU tensor, one row per example) of raw inputs (see `encode`)."""
        import torch

        batch = {
            k: v.to(self.device) if hasattr(v, "to") else v for k, v in self.encode(inputs).items()
        }
        with torch.inference_mode():
            if self.tta and "pixel_values" in batch:
                from tl_hf.augment.tta import view_logits

                pixels = batch.pop("pixel_values")
                out = view_logits(
                    lambda p: self.model(pixel_values=p, **batch).logits,
                    pixels,
                    self.tta,
                    self.tta_flip,
                )
            else:
                out = self.model(**batch).logits
        return out.float().cpu()

    def scaled(self, logits, calibrated: bool = True):
        """Softmax of `logits` divided by the run's temperature (unless `calibrated` is off)."""
        return (logits / (self.temperature if calibrated else 1.0)).softmax(-1)

    def probabilities(self, inputs: dict[str, list], calibrated: bool = True):
        """The (calibrated) probabilities of raw inputs."""
        return self.scaled(self.logits(inputs), calibrated)

    def ranked(self, probabilities, top_k: int) -> list[list[tuple[str, float]]]:
        """Per row, the `top_k` most probable labels and their probabilities, best first."""
        top = probabilities.topk(min(top_k, len(self.names)), dim=-1)
        return [
            [(self.names[i], p) for p, i in zip(values, indices, strict=True)]
            for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]


def read_run_config(root: Path) -> dict[str, Any]:
    """The run's flags; a folder that is no finished run is one line naming the fix."""
    from tl_hf.report.folder import read_yaml

    if not (root / FINISHED_MARKER).is_file():
        raise UserError(
            f"{root} holds no finished run (no {FINISHED_MARKER}): give the --output_dir of a "
            "run that finished"
        )
    config = read_yaml(root / RUN_CONFIG_FILE)
    if not config.get("modality"):
        raise UserError(
            f"{root / RUN_CONFIG_FILE} names no modality: give the folder of a run tl-hf wrote"
        )
    return config


def pick_device(requested: str | None):
    """`--device` (cpu, cuda, cuda:1, mps), else the GPU when there is one."""
    import torch

    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise UserError(f"--device {requested!r} is not a device: use cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: no CUDA device here; use --device cpu")
    return device


def _recorded(flags: type, config: dict[str, Any]) -> Any:
    """An instance of the dataclass `flags` holding the values `config` records (its own
    defaults for the flags an older tl-hf's run did not record)."""
    import dataclasses

    return flags(
        **{f.name: config[f.name] for f in dataclasses.fields(flags) if f.init and f.name in config}
    )


def read_temperature(root: Path) -> float:
    from tl_hf.report.folder import read_json

    record = read_json(root / CALIBRATION_FILE, {}) or {}
    temperature = record.get("temperature")
    return float(temperature) if isinstance(temperature, (int, float)) and temperature > 0 else 1.0


def run_settings(config: dict[str, Any]):
    """(the run's `Modality`, its data settings as the run recorded them: the data flags and
    the modality's own, as training read them): what the input checks and the model read."""
    from tl_hf.config.arguments import DataArguments
    from tl_hf.modalities.base import get_modality
    from tl_hf.registry import Settings

    modality = get_modality(config["modality"])
    own = _recorded(modality.flags, config) if modality.flags is not None else None
    return modality, Settings(_recorded(DataArguments, config), own)


def load_run(
    output_dir: str | os.PathLike,
    device: str | None = None,
    config: dict | None = None,
    tta: int | None = None,
) -> LoadedRun:
    """Load a finished run folder for inference on `device` (see `pick_device`); `config`:
    its `run_config.yaml` when the caller read it already; `tta`: test-time views, instead of
    the run's own `--tta`."""
    import transformers

    from tl_hf.console import quiet_libraries

    root = Path(output_dir)
    config = config if config is not None else read_run_config(root)
    modality, settings = run_settings(config)
    from tl_hf.augment.tta import test_time_views

    views, flip = test_time_views(
        modality, int(config.get("tta") or 0) if tta is None else tta, config.get("augment")
    )
    torch_device = pick_device(device)
    args = SimpleNamespace(
        model=SimpleNamespace(
            model_revision=None,
            cache_dir=None,
            trust_remote_code=bool(config.get("trust_remote_code")),
        ),
        data=settings,
    )
    model_config = transformers.AutoConfig.from_pretrained(
        root, trust_remote_code=args.model.trust_remote_code
    )
    processor = modality.build_processor(str(root), args, model_config)
    auto = getattr(transformers, modality.auto_model)
    with quiet_libraries(False):
        model = auto.from_pretrained(
            root, config=model_config, trust_remote_code=args.model.trust_remote_code
        )
    modality.adapt_model(model, processor)
    model.eval().to(torch_device)
    id2label = model.config.id2label or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    return LoadedRun(
        root=root,
        modality=modality,
        model=model,
        processor=processor,
        settings=settings,
        names=names,
        temperature=read_temperature(root),
        device=torch_device,
        tta=views,
        tta_flip=flip,
    )
