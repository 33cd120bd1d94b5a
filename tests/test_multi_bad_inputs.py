"""Bad input past one machine, without root (fast, no training): an unreachable main machine
or database fails within its stated timeout with one line naming host and port (exit 2), a
main_process_ip that is not the main machine's own or a taken port is named, and a --storage
URL whose driver is missing names the package to install."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import free_port

from tl_hf.cli.main import main
from tl_hf.errors import UserError


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_launch_other_machine_cannot_reach_main_fails_in_its_timeout(capsys):
    port = free_port()  # nothing listens there: every attempt is refused
    started = time.monotonic()
    code = main(
        [
            "launch",
            "--num_machines", "2", "--machine_rank", "1",
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--connect_timeout", "2",
            "recipes/text_classify.py", "--help",
        ]
    )  # fmt: skip
    elapsed = time.monotonic() - started
    line = _one_line(capsys)
    assert code == 2 and 2 <= elapsed < 8, elapsed
    assert f"cannot reach the main machine at 127.0.0.1:{port} within 2 s" in line, line
    assert "--connect_timeout" in line


def test_launch_main_machine_address_must_be_its_own(tmp_path, capsys):
    config = tmp_path / "two.yaml"
    # TEST-NET-2: never an address of this machine; binding fails locally, nothing is sent
    config.write_text(
        "num_machines: 2\nmachine_rank: 0\nmain_process_ip: 198.51.100.7\nmain_process_port: 29500\n"
    )
    code = main(["launch", "--config_file", str(config), "recipes/text_classify.py"])
    line = _one_line(capsys)
    assert code == 2 and "main_process_ip 198.51.100.7 is not an address of this machine" in line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            [
                "launch", "--config_file", str(config), "--main_process_ip", "127.0.0.1",
                "--main_process_port", str(port), "recipes/text_classify.py",
            ]
        )  # fmt: skip
    line = _one_line(capsys)
    assert code == 2 and f"main_process_port {port} is in use" in line, line


def test_launch_without_a_script_is_one_line(capsys):
    assert main(["launch", "--num_machines", "2"]) == 2
    assert "name the script" in _one_line(capsys)


def test_unreachable_database_names_host_and_port_within_the_connect_timeout():
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    from tl_hf.lab.storage import CONNECT_TIMEOUT_S
    from tl_hf.lab.study import open_study

    port = free_port()
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        open_study(f"postgresql://lab@127.0.0.1:{port}/lab", "s", "maximize", "none", 30.0)
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + 5
    text = str(caught.value)
    assert f"cannot connect to the lab database at 127.0.0.1:{port}" in text
    assert "\n" not in text and f"at most {CONNECT_TIMEOUT_S} s" in text


def test_lab_command_with_an_unreachable_database_exits_2_and_writes_nothing(
    tiny_bert, sentiment_csv, tmp_path, capsys
):
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    port = free_port()
    out = tmp_path / "lab"
    code = main(
        [
            "lab", "--model_name_or_path", tiny_bert, "--train_file", sentiment_csv,
            "--output_dir", str(out), "--strategies", "frozen", "--use_cpu",
            "--storage", f"postgresql://lab@127.0.0.1:{port}/lab",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "url, package",
    [
        ("postgresql://u@db:5432/lab", "psycopg[binary]"),
        ("postgresql+psycopg2://u@db/lab", "psycopg2-binary"),
        ("mysql+pymysql://u@db/lab", "PyMySQL"),
    ],
)
def test_storage_driver_not_installed_names_the_package(monkeypatch, url, package):
    import tl_hf.lab.storage as storage

    monkeypatch.setattr(storage, "_installed", lambda module: False)
    with pytest.raises(UserError, match="is not installed; install it with: pip install") as e:
        storage.resolve_url(url)
    assert package in str(e.value)


def test_bare_postgresql_url_takes_the_installed_driver(monkeypatch):
    import tl_hf.lab.storage as storage

    monkeypatch.setattr(storage, "_installed", lambda module: module == "psycopg")
    assert storage.resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.setattr(storage, "_installed", lambda module: module == "psycopg2")
    assert storage.resolve_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert storage.resolve_url("journal:/x/lab.journal") == "journal:/x/lab.journal"
    with pytest.raises(UserError, match="not a storage URL"):
        storage.resolve_url("lab.db")
