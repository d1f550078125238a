"""``python -m reprise`` runs the CLI (found from outside: "No module named reprise.__main__")."""

from __future__ import annotations

import subprocess
import sys


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reprise", *args], capture_output=True, text=True, timeout=60)


def test_python_dash_m_reprise_is_the_cli() -> None:
    helped = run_module("--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: reprise ") and "serve" in helped.stdout


def test_its_exit_code_is_the_cli_s() -> None:
    missing = run_module("config", "check", "--config", "/nonexistent/reprise.yaml")
    assert missing.returncode == 2, (missing.stdout, missing.stderr)
    assert "Traceback" not in missing.stderr
