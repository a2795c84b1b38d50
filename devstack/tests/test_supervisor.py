"""make run's supervisor: a crashed service starts again, a crash loop stops the stack."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import supervisor
from devstack.supervisor import ServiceCrashLoop, Supervisor


def _supervise_until(stack: Supervisor, done: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not done():
        stack.supervise()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_service_that_keeps_crashing_stops_the_stack_with_a_line_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "RESTART_DELAYS_S", (0.01,))
    stack = Supervisor(tmp_path / "logs")
    # Exits with 2 at once: the file to read does not exist.
    broken = stack.spawn("broken-svc", "json.tool", {}, str(tmp_path / "missing.json"))
    try:
        with pytest.raises(ServiceCrashLoop) as stopped:
            _supervise_until(stack, lambda: False)
    finally:
        stack.stop()
    assert len(broken.restarts) == supervisor.MAX_RESTARTS
    message = str(stopped.value)
    assert "broken-svc exited with 2" in message
    assert f"{supervisor.MAX_RESTARTS} restarts within 60s" in message
    assert str(broken.log_path) in message


def test_a_killed_service_starts_again_and_stop_ends_it(tmp_path: Path) -> None:
    stack = Supervisor(tmp_path / "logs")
    # Serves until SIGTERM, as every service does.
    service = stack.spawn("http-svc", "http.server", {}, "0", "--bind", "127.0.0.1")
    first = service.process
    assert first is not None
    first.send_signal(signal.SIGKILL)
    first.wait()
    try:
        _supervise_until(
            stack,
            lambda: (
                service.process is not first
                and service.process is not None
                and service.process.poll() is None
            ),
        )
    finally:
        stack.stop()
    assert len(service.restarts) == 1
    assert service.process is not None and service.process.returncode is not None
    # Stopped for good: watching again starts nothing.
    stack.supervise()
    assert service.process.poll() is not None and len(service.restarts) == 1
