"""The web console's own checks, run by `make test`: its OpenAPI document matches the gateway's
routes (so a route change breaks the console's type check, not the page), and its component
tests (Vitest + Testing Library: the settings modal's rules) pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "console"
NPM = CONSOLE / "scripts" / "npm"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=CONSOLE, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ensure_packages() -> None:
    # `make test` installed them (make console); a bare pytest run installs them from the lock.
    if not (CONSOLE / "node_modules" / ".package-lock.json").exists():
        done = _run(str(NPM), "ci", "--no-audit", "--no-fund", timeout=600)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_console_openapi_matches_the_gateway_routes() -> None:
    done = subprocess.run(
        [sys.executable, str(CONSOLE / "scripts" / "export_openapi.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_console_type_checks_against_the_gateway_routes() -> None:
    _ensure_packages()
    done = _run(str(NPM), "run", "typecheck", timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_console_component_tests_pass() -> None:
    _ensure_packages()
    done = _run(str(NPM), "test", timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    assert " passed" in output and " failed" not in output, output[-4000:]
