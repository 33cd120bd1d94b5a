"""Argument parsing: flags, --config files, defaults per strategy, validation."""

import pytest

from tl_hf.config import build_args, parse_args
from tl_hf.errors import UserError
from tl_hf.modality import get_modality

DEFAULT_LEARNING_RATES = {
    m: get_modality(m).default_learning_rates for m in ("text", "image", "audio")
}


def test_flags_parse_into_dataclasses(tmp_path):
    args = parse_args(
        "text",
        [
            "--strategy",
            "frozen",
            "--trainable_layers",
            "2",
            "--output_dir",
            str(tmp_path),
            "--augment",
            "deletion",
            "swap:p=0.2",
            "--num_train_epochs",
            "4",
        ],
    )
    assert args.strategy.strategy == "frozen" and args.strategy.trainable_layers == 2
    assert args.augment.augment == ["deletion", "swap:p=0.2"]
    assert args.training.num_train_epochs == 4
    assert args.training.output_dir == str(tmp_path)
    # the early-stopping preset
    assert args.training.load_best_model_at_end
    assert (
        args.training.eval_strategy.value == "epoch"
        and args.training.save_strategy.value == "epoch"
    )


def test_config_file_gives_defaults_and_flags_override(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "strategy: full\nlearning_rate: 0.0003\nnum_train_epochs: 7\nper_device_train_batch_size: 4\n"
    )
    args = parse_args("text", ["--config", str(cfg), "--num_train_epochs", "2"])
    assert args.strategy.strategy == "full"
    assert args.training.learning_rate == pytest.approx(3e-4)
    assert args.training.num_train_epochs == 2  # the flag wins
    assert args.training.per_device_train_batch_size == 4


def test_json_config(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text('{"strategy": "llrd", "llrd_decay": 0.65}')
    assert parse_args("text", [f"--config={cfg}"]).strategy.llrd_decay == pytest.approx(0.65)


def test_unknown_config_key_is_named(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("strategy: full\nlearning_rat: 0.1\n")
    with pytest.raises(UserError, match="learning_rat.*did you mean 'learning_rate'"):
        parse_args("text", ["--config", str(cfg)])


def test_unknown_flag_and_bad_choice_are_user_errors():
    with pytest.raises(UserError, match="unknown argument.*bogus"):
        parse_args("text", ["--bogus", "1"])
    with pytest.raises(UserError, match="invalid choice"):
        parse_args("text", ["--strategy", "partial"])


@pytest.mark.parametrize("decay", ["0", "-0.5", "1.5"])
def test_llrd_decay_outside_unit_interval(decay):
    with pytest.raises(UserError, match="llrd_decay must be in \\(0, 1\\]"):
        parse_args("text", ["--llrd_decay", decay])


def test_llrd_decay_one_is_allowed():
    assert parse_args("text", ["--llrd_decay", "1"]).strategy.llrd_decay == 1


@pytest.mark.parametrize("strategy", ["frozen", "full", "llrd"])
def test_strategy_default_learning_rate_unless_given(strategy):
    assert (
        parse_args("text", ["--strategy", strategy]).training.learning_rate
        == DEFAULT_LEARNING_RATES["text"][strategy]
    )
    given = parse_args("text", ["--strategy", strategy, "--learning_rate", "2e-5"])
    assert given.training.learning_rate == pytest.approx(2e-5)


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_head_needs_larger_default_step_than_full_fine_tune(modality):
    rates = DEFAULT_LEARNING_RATES[modality]
    assert rates["frozen"] >= 10 * rates["full"]
    assert parse_args(modality, ["--strategy", "frozen"]).training.learning_rate == rates["frozen"]


def test_api_keywords_match_flags():
    args = build_args(
        "text", strategy="full", learning_rate=1e-4, augment=["deletion"], num_train_epochs=3
    )
    assert args.strategy.strategy == "full" and args.training.learning_rate == pytest.approx(1e-4)
    assert args.explicit == {"strategy", "learning_rate", "augment", "num_train_epochs"}
    with pytest.raises(UserError, match="unknown argument.*strategie"):
        build_args("text", strategie="full")


def test_trainable_layers_only_with_frozen():
    with pytest.raises(UserError, match="--trainable_layers only applies to --strategy frozen"):
        parse_args("text", ["--strategy", "full", "--trainable_layers", "1"])


def test_early_stopping_needs_matching_save_strategy():
    with pytest.raises(UserError, match="save and eval strategy to match"):
        parse_args("text", ["--save_strategy", "steps"])
    with pytest.raises(UserError, match="keep --load_best_model_at_end true"):
        parse_args("text", ["--load_best_model_at_end", "false"])
    # turning early stopping off lifts the requirement
    parse_args(
        "text",
        [
            "--save_strategy",
            "steps",
            "--load_best_model_at_end",
            "false",
            "--early_stopping_patience",
            "0",
        ],
    )


def test_run_config_round_trips(tmp_path):
    """run_config.yaml written from the resolved arguments reproduces them through --config."""
    from tl_hf.output.save import write_run_config

    args = parse_args(
        "text",
        [
            "--strategy",
            "llrd",
            "--llrd_decay",
            "0.7",
            "--learning_rate",
            "3e-5",
            "--output_dir",
            str(tmp_path / "o"),
            "--augment",
            "swap",
        ],
    )
    write_run_config(str(tmp_path / "run_config.yaml"), args.to_dict())
    again = parse_args("text", ["--config", str(tmp_path / "run_config.yaml")])
    assert again.to_dict() == args.to_dict()


def test_import_tl_hf_stays_cheap():
    import subprocess
    import sys

    code = "import sys, tl_hf; print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_image_llrd_trains_longer_than_the_other_strategies(tmp_path):
    """Image runs: llrd defaults to 20 epochs (still improving at 10 on small real sets), the
    other strategies to the shared 10 (the frozen ones lose with 20, docs/defaults.md); a given
    value wins; the embedded default run keeps its own size; a lab trial re-derives the epochs
    for its own strategy from a base run that had llrd's."""
    from tl_hf.lab.grid import AugmentSet, TrialSpec, trial_args

    data = str(tmp_path / "train.csv")

    def epochs(modality, **kw):
        return build_args(modality, train_file=data, **kw).training.num_train_epochs

    assert epochs("image") == 20 and epochs("image", strategy="llrd") == 20
    assert epochs("image", strategy="frozen") == epochs("image", strategy="lp_ft") == 10
    assert epochs("image", num_train_epochs=10) == 10 and epochs("image", num_train_epochs=3) == 3
    assert epochs("text") == epochs("audio") == epochs("audio", strategy="llrd") == 10
    assert build_args("image").training.num_train_epochs == 4  # the embedded default run
    base = build_args("image", train_file=data)
    for strategy, expected in (("frozen", 10), ("llrd", 20), ("full", 10)):
        spec = TrialSpec(strategy, 1e-3, None, None, "none", 0)
        trial = trial_args(base, spec, AugmentSet(["none"]), str(tmp_path / strategy))
        assert trial.training.num_train_epochs == expected, strategy


def test_image_llrd_waits_longer_before_stopping(tmp_path):
    """Image llrd on its own 20 epochs counts patience 8 (3 stopped it on validation noise:
    docs/defaults.md, the best checkpoint); a given patience, another epoch count, another
    strategy or modality keep the shared 3; a lab trial derives it for its own strategy."""
    from tl_hf.lab.grid import AugmentSet, TrialSpec, trial_args

    data = str(tmp_path / "train.csv")

    def patience(modality, **kw):
        return build_args(modality, train_file=data, **kw).stopping.early_stopping_patience

    assert patience("image") == patience("image", strategy="llrd") == 8
    assert patience("image", early_stopping_patience=3) == 3
    assert patience("image", early_stopping_patience=5, strategy="llrd") == 5
    assert patience("image", num_train_epochs=6) == 3
    assert patience("image", strategy="frozen") == patience("image", strategy="lp_ft") == 3
    assert patience("text") == patience("audio") == 3
    base = build_args("image", train_file=data)
    for strategy, expected in (("frozen", 3), ("llrd", 8)):
        spec = TrialSpec(strategy, 1e-3, None, None, "none", 0)
        trial = trial_args(base, spec, AugmentSet(["none"]), str(tmp_path / strategy))
        assert trial.stopping.early_stopping_patience == expected, strategy


# -- every numeric flag checked before anything loads (tl_hf.ranges), generated from metadata


def _flag_types():
    from transformers import TrainingArguments

    from tl_hf.config import DATACLASSES, ReportArguments
    from tl_hf.lab.grid import LabArguments

    return (*DATACLASSES, LabArguments, ReportArguments, TrainingArguments)


def _outside(spec: str) -> float:
    """A value just outside the first alternative of `spec` and inside none of the others."""
    import math

    from tl_hf.ranges import _parts, in_range

    low, low_closed, high, high_closed = _parts(spec)[0]
    candidates = [low - 1, low, high, high + 1, -1e9]
    for value in candidates:
        if not math.isinf(value) and not in_range(value, spec):
            return int(value) if float(value).is_integer() else value
    raise AssertionError(f"no value outside {spec}")


def test_every_numeric_toolkit_flag_declares_its_range():
    import dataclasses
    import typing

    types = _flag_types()[:-1]  # TrainingArguments' ranges are a table (TRAINING_RANGES)
    missing = []
    for cls in types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            args = typing.get_args(hints[f.name]) or (hints[f.name],)
            inner = {a for t in args for a in (typing.get_args(t) or (t,))}
            numeric = inner & {int, float} and bool not in inner
            if numeric and "range" not in f.metadata:
                missing.append(f"{cls.__name__}.{f.name}")
    assert missing == [], f"numeric flags without a declared range: {missing}"


def _declared():
    from tl_hf.ranges import declared_ranges

    return declared_ranges(_flag_types())


@pytest.mark.parametrize(
    "name", sorted(n for n, d in _declared().items() if d.get("range") is not None)
)
def test_a_number_outside_its_range_is_refused_naming_flag_value_and_range(name):
    from tl_hf.config import parse_args_with
    from tl_hf.lab.grid import LabArguments
    from tl_hf.ranges import describe_range

    declared = _declared()[name]
    value = _outside(declared["range"])
    with pytest.raises(UserError) as err:
        parse_args_with("text", [f"--{name}", str(value)], extra=(LabArguments,))
    message = str(err.value)
    flag = declared.get("flag") or f"--{name}"
    assert message.startswith(f"{flag} must be {describe_range(declared['range'])}, got ")
    assert str(float(value)) in message or str(value) in message


def test_an_empty_lab_grid_is_refused():
    from tl_hf.config import build_args_with
    from tl_hf.lab.grid import LabArguments

    for name in ("strategies", "learning_rates", "augment_sets"):
        with pytest.raises(UserError, match=f"--{name} is empty: give at least one value"):
            build_args_with("text", extra=(LabArguments,), **{name: []})


def test_max_steps_replaces_the_epoch_count():
    args = parse_args("text", ["--num_train_epochs", "0", "--max_steps", "5"])
    assert args.training.max_steps == 5
    with pytest.raises(UserError, match="--max_steps must be -1 or >= 1, got 0"):
        parse_args("text", ["--max_steps", "0"])
