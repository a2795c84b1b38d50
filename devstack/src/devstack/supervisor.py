"""The processes of `make run`: each service started, watched, and started again when it crashes.

A crashed service (one that exits while the stack is running, e.g. killed with SIGKILL) is started
again with the same command and environment, after a delay that doubles on each crash in a row
(RESTART_DELAYS_S); a service that crashes more than MAX_RESTARTS times within RESTART_WINDOW_S
is broken, not unlucky, and stops the whole stack with a line that says which one and where its
log is. Stopping the stack sends SIGTERM to every service and waits for it to finish.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("devstack")

# The first restart waits a little, so that a Ctrl-C (which reaches every service of the
# terminal's process group at once) is seen as a stop, never as a crash to recover from.
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
# A service that ran this long before crashing starts again from the shortest delay.
STABLE_AFTER_S = 30.0
STOP_GRACE_S = 15.0


class ServiceCrashLoop(SystemExit):
    """A service crashed too often to keep restarting it; the stack stops."""


@dataclass
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # When a crashed service is due to start again (None: running, or stopped for good).
    restart_at: float | None = None
    crashes_in_a_row: int = 0
    restarts: deque[float] = field(default_factory=deque)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


class Supervisor:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self.stopping = False

    def spawn(self, name: str, module: str, env: dict[str, str], *args: str) -> Service:
        service = Service(
            name=name,
            command=[sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            log_path=self.logs / f"{name}.log",
        )
        self.services.append(service)
        self._start(service)
        return service

    def _start(self, service: Service) -> None:
        with open(service.log_path, "ab") as output:
            service.process = subprocess.Popen(
                service.command, env=service.env, stdout=output, stderr=subprocess.STDOUT
            )
        service.started_at = time.monotonic()
        service.restart_at = None

    def supervise(self) -> None:
        """Notice crashed services and start them again when their delay is over."""
        if self.stopping:
            return
        now = time.monotonic()
        for service in self.services:
            process = service.process
            if process is None:
                continue
            if service.restart_at is None:
                if process.poll() is None:
                    continue
                self._crashed(service, process.returncode, now)
            elif now >= service.restart_at:
                service.restarts.append(now)
                log.warning("starting %s again (pid was %d)", service.name, process.pid)
                self._start(service)

    def _crashed(self, service: Service, returncode: int, now: float) -> None:
        while service.restarts and now - service.restarts[0] > RESTART_WINDOW_S:
            service.restarts.popleft()
        if len(service.restarts) >= MAX_RESTARTS:
            raise ServiceCrashLoop(
                f"{service.name} {describe_exit(returncode)} after {len(service.restarts)} restarts"
                f" within {RESTART_WINDOW_S:.0f}s; not restarting it again, stopping the stack."
                f" See {service.log_path}"
            )
        if now - service.started_at >= STABLE_AFTER_S:
            service.crashes_in_a_row = 0
        delay = RESTART_DELAYS_S[min(service.crashes_in_a_row, len(RESTART_DELAYS_S) - 1)]
        service.crashes_in_a_row += 1
        service.restart_at = now + delay
        log.warning(
            "%s %s; restarting it in %.1fs (restart %d of at most %d per %.0fs; see %s)",
            service.name,
            describe_exit(returncode),
            delay,
            len(service.restarts) + 1,
            MAX_RESTARTS,
            RESTART_WINDOW_S,
            service.log_path,
        )

    def stop(self) -> None:
        """SIGTERM to every service (the last started first), then wait for each to exit."""
        self.stopping = True
        running = [
            s.process
            for s in reversed(self.services)
            if s.process is not None and s.process.poll() is None
        ]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
