"""Model: the checkpoint's config (checked before anything heavy), then
`AutoModelFor*Classification` with the new label maps; the head the checkpoint did not
provide is recorded for the strategy step."""

from __future__ import annotations

from tl_hf.errors import UserError


def load_checkpoint_config(model_path: str, model_args):
    """The checkpoint's config; refuses remote code unless `--trust_remote_code`."""
    import os

    from transformers import AutoConfig

    looks_local = (
        model_path.startswith((".", "/", "~")) or model_path.count("/") > 1
    )  # Hub ids: org/name
    if looks_local and not os.path.isdir(os.path.expanduser(model_path)):
        raise UserError(
            f"--model_name_or_path {model_path} is not a folder: give a local checkpoint "
            "folder or a Hub id"
        )
    if os.path.isdir(model_path) and not os.path.isfile(os.path.join(model_path, "config.json")):
        raise UserError(
            f"--model_name_or_path {model_path} is not a checkpoint folder (no config.json): give "
            "a folder written by save_pretrained, or a Hub id"
        )
    try:
        return AutoConfig.from_pretrained(
            model_path,
            revision=model_args.model_revision,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UserError(
                f"checkpoint {model_path} runs its own modelling code: review it, then pass "
                "--trust_remote_code"
            ) from err
        raise UserError(
            f"cannot read the config of {model_path}: {str(err).splitlines()[0]}"
        ) from err
    except OSError as err:
        raise UserError(
            f"cannot load checkpoint {model_path!r} ({str(err).splitlines()[0]}): check the id, "
            "give a local folder, or go online (HF_HUB_OFFLINE=1 blocks downloads)"
        ) from err


def check_checkpoint(model_path: str, config, auto_class_name: str, modality: str) -> None:
    """Before any weights load: the architecture fits the recipe's task, and a local folder's
    weights are whole (a truncated copy fails here, not deep inside from_pretrained)."""
    import os

    import transformers

    from tl_hf.output.atomic import safetensors_sizes

    mapping = getattr(transformers, auto_class_name)._model_mapping
    if not getattr(config, "auto_map", None) and type(config) not in mapping:
        from tl_hf.modalities.base import get_modality, modality_names

        fits = [
            m
            for m in modality_names()
            if type(config) in getattr(transformers, get_modality(m).auto_model)._model_mapping
        ]
        raise UserError(
            f"{model_path} is a {config.model_type} checkpoint, which {auto_class_name} cannot "
            f"load: give a {modality} checkpoint"
            + (f", or use the {fits[0]} recipe for this one" if fits else "")
        )
    weights = os.path.join(model_path, "model.safetensors")
    if os.path.isfile(weights):
        actual, expected = safetensors_sizes(weights)
        if actual != expected:
            raise UserError(
                f"{weights} is truncated or damaged ({actual} bytes, its header says "
                f"{expected}): copy or download the checkpoint again"
            )


def build_model(
    auto_class_name: str,
    model_path: str,
    model_args,
    label_names: list[str],
    config=None,
    verbose: bool = False,
    display_name: str | None = None,
):
    """The classifier with a head for `label_names`; an existing head of another size is replaced.

    transformers' load report is condensed to one line when it only lists the new head
    (`tl_hf.console`, naming the checkpoint `display_name`); `verbose` keeps it whole.

    Sets `model.tl_hf_new_parameters`: the names the checkpoint did not provide (missing
    or resized on load), which `tl_hf.strategy` treats as the head.
    """
    import transformers

    auto_class = getattr(transformers, auto_class_name)
    kwargs = _label_kwargs(label_names, config)
    if model_args.random_init:  # the from-scratch baseline: same architecture, no weights
        if config is None:
            raise UserError("--random_init needs the checkpoint's config")
        model = auto_class.from_config(config, trust_remote_code=model_args.trust_remote_code)
        model.tl_hf_new_parameters = {n for n, _ in model.named_parameters()}
    else:
        model = _from_pretrained(
            auto_class_name, model_path, model_args, kwargs, verbose, display_name
        )
    model.tl_hf_fixed_parameters = fixed_parameter_names(auto_class, model.config)
    return model


def _label_kwargs(label_names: list[str], config) -> dict:
    """What gives the model a head for `label_names`: the label maps as keyword arguments, or,
    with a `config`, that config with the maps written into it."""
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    kwargs = {"num_labels": len(label_names), "id2label": id2label, "label2id": label2id}
    if config is not None:
        config.num_labels = len(label_names)
        config.id2label, config.label2id = id2label, label2id
        if hasattr(config, "label_names"):  # timm wrapper configs save these instead of id2label
            config.label_names = list(label_names)
        kwargs = {"config": config}
    return kwargs


def _from_pretrained(
    auto_class_name: str, model_path: str, model_args, kwargs: dict, verbose, display_name
):
    """The pretrained weights with the new head; `tl_hf_new_parameters` records what the
    checkpoint did not provide, and the load report is condensed (see `build_model`)."""
    import transformers

    from tl_hf.console import condensed_load_report, release_load_report
    from tl_hf.report.share import shareable_name

    auto_class = getattr(transformers, auto_class_name)
    try:
        with condensed_load_report(verbose) as held:
            model, info = auto_class.from_pretrained(
                model_path,
                revision=model_args.model_revision,
                cache_dir=model_args.cache_dir,
                trust_remote_code=model_args.trust_remote_code,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
                **kwargs,
            )
    except ValueError as err:
        raise UserError(
            f"{model_path} cannot be loaded as {auto_class_name}: {str(err).splitlines()[0]}"
        ) from err
    mismatched = {
        k[0] if isinstance(k, (tuple, list)) else k for k in info.get("mismatched_keys", ())
    }
    model.tl_hf_new_parameters = set(info.get("missing_keys", ())) | mismatched
    name = display_name or str(shareable_name(model_path)).removeprefix("./")
    release_load_report(
        held, sorted(info.get("unexpected_keys", ())), model.tl_hf_new_parameters, name, model
    )
    return model


def fixed_parameter_names(auto_class, config) -> set[str]:
    """Parameters the architecture itself creates with `requires_grad=False` (e.g. Whisper's
    sinusoidal positions): they stay fixed under every strategy. `from_pretrained` turns them
    trainable, so they are read off a skeleton of the model built on the meta device."""
    import torch

    try:
        with torch.device("meta"):
            skeleton = auto_class.from_config(config)
    except Exception:  # remote-code or exotic models: nothing known to be fixed
        return set()
    return {n for n, p in skeleton.named_parameters() if not p.requires_grad}
