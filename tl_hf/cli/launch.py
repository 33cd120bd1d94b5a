"""`tl-hf launch [accelerate launch flags] SCRIPT [script flags]`: `accelerate launch`, after
checking what a launch over several machines needs, so a wrong address fails within a stated
time with one line instead of waiting for a rendezvous that never comes:

    tl-hf launch --config_file accelerate_configs/two_machine_cpu.yaml --machine_rank 1 \\
        --main_process_ip 10.0.0.1 recipes/text_classify.py --train_file train.csv ...

- machine_rank 0 (the main machine): `main_process_ip` must be one of its own addresses and
  `main_process_port` free there;
- any other machine: the main machine must accept a TCP connection at
  `main_process_ip:main_process_port` within `--connect_timeout` seconds (default 120; start the
  main machine first, or within that time).

Then it becomes `accelerate launch` with the same flags (minus `--connect_timeout`). With one
machine nothing is checked. Settings come from the command line, else the `--config_file`.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time

from tl_hf.errors import UserError

CONNECT_TIMEOUT_S = 120.0
KEYS = ("num_machines", "machine_rank", "main_process_ip", "main_process_port")


def split_launcher(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the launcher's flags, the script and its flags): the script is the first argument
    ending in .py, or `-m MODULE`."""
    for i, arg in enumerate(argv):
        if arg == "-m" or (arg.endswith(".py") and not arg.startswith("-")):
            return argv[:i], argv[i:]
    raise UserError("tl-hf launch: name the script to run (e.g. recipes/text_classify.py)")


def settings(flags: list[str]) -> tuple[dict, float, list[str]]:
    """(the multi-machine settings, the connect timeout, the flags for accelerate)."""
    values: dict = {}
    timeout, kept, i = CONNECT_TIMEOUT_S, [], 0
    config_file = None
    while i < len(flags):
        name, eq, inline = flags[i].partition("=")
        value = inline if eq else (flags[i + 1] if i + 1 < len(flags) else None)
        step = 1 if eq else 2
        key = name.lstrip("-")
        if key == "connect_timeout":
            timeout = float(value)
            i += step
            continue
        if key in KEYS or key == "config_file":
            if value is None:
                raise UserError(f"tl-hf launch: {name} needs a value")
            values[key] = value
            kept += flags[i : i + step]
            i += step
            continue
        kept.append(flags[i])
        i += 1
    config_file = values.pop("config_file", None)
    if config_file:
        import yaml

        try:
            with open(config_file) as handle:
                config = yaml.safe_load(handle) or {}
        except OSError as err:
            raise UserError(f"--config_file {config_file}: {err.strerror}") from None
        for key in KEYS:
            values.setdefault(key, config.get(key))
    return values, timeout, kept


def check_main_machine(ip: str, port: int) -> None:
    """On machine_rank 0: `ip` is this machine's and `port` is free on it."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
        # as torch's store binds: connections of an earlier run that linger (TIME_WAIT) do not
        # make the port taken, a process listening there does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(
                    f"main_process_port {port} is in use on this machine ({ip}:{port}): choose a "
                    "free port (--main_process_port) and give the same on every machine"
                ) from None
            raise UserError(
                f"main_process_ip {ip} is not an address of this machine ({ip}:{port}: "
                f"{err.strerror}): machine_rank 0 runs on the main machine and "
                "--main_process_ip is its own address (see `ip addr`)"
            ) from None


def wait_for_main_machine(ip: str, port: int, timeout: float) -> None:
    """On the other machines: the main machine accepts a connection at ip:port in time."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UserError(
                f"cannot reach the main machine at {ip}:{port} within {timeout:g} s ({last}): "
                "start machine_rank 0 first, check --main_process_ip and --main_process_port, "
                "and that the port is open between the machines (--connect_timeout sets the wait)"
            )
        try:
            with socket.create_connection((ip, port), timeout=min(5.0, left)):
                return
        except OSError as err:
            last = err.strerror or type(err).__name__
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))


def accelerate_launch() -> list[str]:
    """`accelerate launch` as this interpreter's module run: the same launcher as the
    `accelerate` console script, without the script's import of every other subcommand first
    (timm and torchvision, for `accelerate estimate-memory`): 2.2 s instead of 7.3 s to start
    two processes of an empty script on these cores."""
    from tl_hf.output.interrupt import LAUNCH_MODULE

    return [sys.executable, "-m", LAUNCH_MODULE]


def main(argv: list[str]) -> int:
    """`tl-hf launch ...`: check, then exec `accelerate launch`; 2 with one line on an error."""
    try:
        flags, script = split_launcher(argv)
        values, timeout, kept = settings(flags)
        machines = int(values.get("num_machines") or 1)
        if machines > 1:
            ip, port = values.get("main_process_ip"), values.get("main_process_port")
            if not ip or not port:
                raise UserError(
                    "a launch over several machines needs --main_process_ip and "
                    "--main_process_port (or both in the --config_file)"
                )
            if int(values.get("machine_rank") or 0) == 0:
                check_main_machine(str(ip), int(port))
            else:
                wait_for_main_machine(str(ip), int(port), timeout)
    except (UserError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    sys.stdout.flush()
    command = accelerate_launch()
    os.execv(command[0], [*command, *kept, *script])
    return 0  # not reached
