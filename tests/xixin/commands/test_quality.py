"""The `quality` command: called as a function, registered on a parser, and run as a module."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from codec.pcm import write_wav
from tests.codec.speech import SENTENCES, speak
from xixin.commands.quality import add_parser, main


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "cmn.wav"
    pcm = speak("cmn", SENTENCES["cmn"], rate=48000)[: 5 * 48000]  # resampled by the command
    path.write_bytes(write_wav(pcm, 48000))
    return path


def test_registers_on_a_parser_and_prints_the_figures(
    speech_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="xixin")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["quality", str(speech_file), "--loss", "10", "--jitter", "20"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    for label in ("PESQ-WB", "STOI", "expand rate", "late rate", "added delay", "first burst"):
        assert label in out
    assert "phase sweep" not in out  # only when asked for


def test_phase_sweep_reports_the_worst_phase(
    speech_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(speech_file), "--jitter", "1", "--phase-sweep", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["phase_sweep_worst_shift_ms"] in (0.0, 10.0, 20.0)
    assert result["phase_sweep_min"] <= min(result["pesq_wb"], result["first_burst_pesq_wb"])
    assert result["target_delay_ms"] > 0
    assert main([str(speech_file), "--phase-sweep", "20"]) == 0
    assert "phase sweep worst PESQ-WB" in capsys.readouterr().out
    assert main([str(speech_file), "--phase-sweep", "0"]) == 2  # a step must be positive


def test_json_output_and_options(speech_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            str(speech_file),
            "--loss",
            "5",
            "--burst",
            "3",
            "--jitter",
            "10",
            "--reorder",
            "2",
            "--bitrate",
            "12",
            "--protect",
            "off",
            "--cold",
            "--json",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert 1.0 <= result["pesq_wb"] <= 4.7 and 0.0 <= result["stoi"] <= 1.0
    assert result["final_red"] is False and result["final_bitrate"] == 12000
    assert result["first_burst_pesq_wb"] == result["pesq_wb"]  # --cold: the first burst only
    assert result["phase_sweep_min"] is None


def test_errors_are_reported_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing.wav")]) == 2
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    assert main([str(bad)]) == 2
    assert main([str(bad), "--bitrate", "64"]) == 2
    assert "xixin quality:" in capsys.readouterr().err


def test_runs_as_a_module(speech_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xixin.commands.quality", str(speech_file), "--loss", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "PESQ-WB" in done.stdout
