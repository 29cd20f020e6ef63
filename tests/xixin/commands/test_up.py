"""`xixin up --demo` — the main job — as a user runs it: a real process, stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.broker import free_port, process_running
from xixin.cli import main


def test_up_demo_shows_grants_and_relayed_frames(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xixin.cli",
            "up",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--demo",
            "--duration",
            "8",
            "--data-dir",
            str(tmp_path),
            "--http-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for account in ("centre (centre)", "renxi (area:area-renxi)", "grid01 (grid:grid-01)"):
        assert f"xixin: demo account {account} password " in result.stdout
    last = [line for line in result.stdout.splitlines() if line.startswith("xixin: online")][-1]
    fields = last.split()
    grants, relayed = (
        int(fields[fields.index("grants") + 1]),
        int(fields[fields.index("relayed") + 1]),
    )
    assert grants >= 1 and relayed >= 50, last


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_up_serves_console_and_api_and_stops_cleanly(tmp_path: Path, how: str) -> None:
    """Ctrl-C in a terminal signals the whole foreground group (here: a session of its own);
    SIGTERM (systemd, docker stop) only the main process. Both stop everything, the broker
    last, so no client sees its broker vanish."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xixin.cli",
            "up",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path),
            "--http-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    broker_pid = None
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as r:
                    health = json.load(r)
            except OSError:
                time.sleep(0.2)
        assert health is not None and health["mqtt_connected"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            assert "Xixin dispatch console" in r.read().decode()
        broker_pid = int((tmp_path / "broker" / "mosquitto.pid").read_text())
        os.kill(broker_pid, 0)  # the managed broker is running
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err[-2000:]
        with pytest.raises(ProcessLookupError):
            os.kill(broker_pid, 0)
        assert "reconnecting" not in err, err[-2000:]
        assert out.splitlines()[-1].startswith("xixin: online 0 ")  # the final report
        # the first start made an administrator and showed its password once
        assert "first start: created the administrator account 'admin'" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if broker_pid is not None and process_running(broker_pid):
            os.kill(broker_pid, signal.SIGTERM)  # left by a failing run: ours, by its PID


def test_up_with_its_http_port_taken_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "xixin.cli",
                "up",
                "--mqtt-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
                "--data-dir",
                str(tmp_path / "var"),
                "--http-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"xixin up: cannot serve the console and API on 127.0.0.1:{port}: "
        "Address already in use; choose another --http-port"
    )
    assert not (tmp_path / "var").exists()  # no database, no broker, nothing written


def test_up_with_a_broken_org_file_names_the_problem_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = tmp_path / "org.yaml"
    org.write_text("centre: [unclosed\n", encoding="utf-8")
    args = ["up", "--mqtt-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "var")]
    args += ["--http-port", "0", "--org", str(org)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xixin up: {org}: not valid YAML")
    assert "Traceback" not in err
    assert main([*args[:-1], str(tmp_path / "missing.yaml")]) == 2
    assert "xixin up: cannot read org file" in capsys.readouterr().err


def test_quality_subcommand_is_wired(tmp_path: Path) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", "cmn", "-w", str(speech), "仁西片区巡逻一组，请到民盛小区东门"],
        check=True,
    )
    result = subprocess.run(
        [sys.executable, "-m", "xixin.cli", "quality", str(speech), "--loss", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-1000:]
    report = json.loads(result.stdout)
    assert 1.0 <= report["pesq_wb"] <= 4.7 and 0.0 <= report["stoi"] <= 1.0


def test_up_refuses_plain_http_beyond_this_machine_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["up", "--mqtt-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "var")]
    assert main([*args, "--http-host", "0.0.0.0", "--http-port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--http-host 0.0.0.0 serves beyond this machine" in err and "--http-tls" in err
    assert not (tmp_path / "var").exists()  # refused before anything was written
    assert main([*args, "--http-host", "0.0.0.0", "--http-port", "0", "--http-tls"]) == 2
    err = capsys.readouterr().err
    assert "TLS file" in err and "xixin certs init" in err


def test_up_serves_https_with_the_certificates_of_certs_init_and_the_first_admin_signs_in(
    tmp_path: Path,
) -> None:
    import re
    import ssl
    import urllib.parse

    data = tmp_path / "var"
    assert main(["certs", "init", "--data-dir", str(data)]) == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xixin.cli", "up", "--mqtt-listen", "127.0.0.1:0",
         "--data-dir", str(data), "--http-port", str(port), "--http-tls", "--duration", "60s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("  ") for line in lines):  # the admin's password line
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no output"
            lines.append(line)
        assert any(f"https://127.0.0.1:{port}/" in line for line in lines), lines
        password = next(line.strip() for line in lines if re.fullmatch(r"  \S+\n", line))
        tls = ssl.create_default_context(cafile=str(data / "tls" / "ca.pem"))
        form = urllib.parse.urlencode({"username": "admin", "password": password}).encode()
        url = f"https://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/api/auth/token", form, timeout=10, context=tls) as r:
            token = json.load(r)["access_token"]
        request = urllib.request.Request(
            f"{url}/api/health", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10, context=tls) as r:
            assert json.load(r)["mqtt_connected"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
