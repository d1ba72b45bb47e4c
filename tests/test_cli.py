"""The three console commands start, print help and version, and reject unknown subcommands clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kubeedge

COMMANDS = ["cloudcore", "edgecore", "keadm"]


def run(prog: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; from kubeedge.cli.{prog} import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("prog", COMMANDS)
def test_version(prog: str) -> None:
    result = run(prog, "--version")
    assert result.returncode == 0
    assert kubeedge.__version__ in result.stdout
    assert prog in result.stdout


@pytest.mark.parametrize("prog", COMMANDS)
def test_help(prog: str) -> None:
    result = run(prog, "--help")
    assert result.returncode == 0
    assert f"usage: {prog}" in result.stdout
    assert "--log-level" in result.stdout


@pytest.mark.parametrize("prog", COMMANDS)
def test_unknown_subcommand_is_a_usage_error(prog: str) -> None:
    result = run(prog, "frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
