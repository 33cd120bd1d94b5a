"""Every launch config in accelerate_configs/ loads in accelerate, uses only keys accelerate
knows, and opens with the command that launches it."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import REPO

CONFIGS = sorted(Path(REPO, "accelerate_configs").glob("*.yaml"))
# the nested sections whose keys become `accelerate launch` options (launch.py copies
# fsdp_config.x to --fsdp_x, deepspeed_config.x to --x)
NESTED = {
    "fsdp_config": "fsdp_",
    "deepspeed_config": "",
    "dynamo_config": "dynamo_",
    "fp8_config": "fp8_",
}


def launch_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return {action.dest for action in launch_command_parser()._actions}


def test_the_expected_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {
        "single_gpu_bf16.yaml",
        "multi_gpu_ddp.yaml",
        "fsdp_full_shard.yaml",
        "deepspeed_zero2.yaml",
        "deepspeed_zero3.yaml",
        "two_machine_ddp.yaml",
        "cpu_2proc.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_known_keys(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    data = yaml.safe_load(path.read_text())
    fields = {f.name for f in dataclasses.fields(ClusterConfig)}
    assert not set(data) - fields, f"keys accelerate does not know: {set(data) - fields}"
    options = launch_options()
    for section, prefix in NESTED.items():
        for key in data.get(section) or {}:
            name = key if key.startswith(prefix) else prefix + key
            assert name in options, f"{section}.{key} is no accelerate launch option"
    config = load_config_from_file(str(path))  # ClusterConfig(**data): also checks the enum values
    assert config.num_processes >= 1 and config.mixed_precision in ("no", "bf16", "fp16")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_opens_with_its_launch_command_and_comments_every_key(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith(
        f"# accelerate launch --config_file accelerate_configs/{path.name} recipes/"
    )
    for line in lines:
        body = line.split("#", 1)[0]
        if body.strip() and not body.rstrip().endswith(
            ":"
        ):  # a key with a value: it needs its comment
            assert "#" in line or lines[lines.index(line) - 1].strip().startswith("#"), line


def test_fsdp_keeps_original_parameters():
    data = yaml.safe_load(Path(REPO, "accelerate_configs", "fsdp_full_shard.yaml").read_text())
    assert data["distributed_type"] == "FSDP"
    assert data["fsdp_config"]["fsdp_use_orig_params"] is True
    # use_orig_params exists in FSDP1 only (FSDP2 ignores it)
    assert str(data["fsdp_config"]["fsdp_version"]) == "1"


def test_cpu_config_starts_two_ranks():
    data = yaml.safe_load(Path(REPO, "accelerate_configs", "cpu_2proc.yaml").read_text())
    # MULTI_CPU alone goes to the single-process launcher (or needs mpirun); MULTI_GPU is torchrun
    assert (
        data["distributed_type"] == "MULTI_GPU"
        and data["num_processes"] == 2
        and data["use_cpu"] is True
    )
