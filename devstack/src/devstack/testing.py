"""`make run` as its tests drive it: the real `python -m devstack` in a session of its own, on a
folder and gateway port of its own and a given Postgres database, every process it started found
and stopped. (devstack is a development package: the production image does not install it.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import psutil
from waiting import eventually

# Settings a developer's shell may carry that would point the stack elsewhere.
_OUTSIDE_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GATEWAY_HOST",
    "GATEWAY_PORT",
    "USER_NAME",
    "DEVSTACK_DIR",
)
READY_WITHIN_S = 45.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevStack:
    """`python -m devstack` in its own session, so that every process it starts can be found."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.database_url = database_url
        self.port = _free_port()
        self.gateway_url = f"http://127.0.0.1:{self.port}"
        self.output = folder / "devstack.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **settings: str) -> None:
        """`python -m devstack`, with `settings` added to its environment (e.g. REPLICAS)."""
        env = {k: v for k, v in os.environ.items() if k not in _OUTSIDE_SETTINGS}
        env.update(
            DEVSTACK_DIR=str(self.folder),
            GATEWAY_PORT=str(self.port),
            DATABASE_URL=self.database_url,
            LOG_LEVEL="WARNING",
        )
        env.update(settings)
        with open(self.output, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    async def wait_ready(self) -> None:
        async def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"make run exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                async with httpx.AsyncClient() as http:
                    response = await http.get(f"{self.gateway_url}/readyz", timeout=1.0)
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, within_s=READY_WITHIN_S, what="make run to become ready")

    def service_pid(self, module: str) -> int | None:
        """The pid of the running `python -m <module>` that make run started, if any."""
        assert self.process is not None
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return None
        for child in children:
            try:
                if child.cmdline()[1:3] == ["-m", module] and child.status() != "zombie":
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        return None

    def replica_pids(self, module: str) -> dict[str, int]:
        """The running `python -m <module>` processes by replica name (their
        service.instance.id, which make run sets for each)."""
        assert self.process is not None
        found: dict[str, int] = {}
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return found
        for child in children:
            try:
                if child.cmdline()[1:3] != ["-m", module] or child.status() == "zombie":
                    continue
                attributes = child.environ().get("OTEL_RESOURCE_ATTRIBUTES", "")
            except psutil.NoSuchProcess:
                continue
            for attribute in attributes.split(","):
                key, _, value = attribute.partition("=")
                if key == "service.instance.id":
                    found[value] = child.pid
        return found

    def metrics_ports(self, module: str) -> dict[str, int]:
        """Each replica's metrics port by replica name (`<PREFIX>METRICS_PORT`, which make run
        sets for every replica; a restarted replica keeps its port)."""
        assert self.process is not None
        prefix = module.upper() + "_"
        ports: dict[str, int] = {}
        for name, pid in self.replica_pids(module).items():
            try:
                port = psutil.Process(pid).environ().get(f"{prefix}METRICS_PORT")
            except psutil.NoSuchProcess:
                continue
            if port:
                ports[name] = int(port)
        return ports

    def kill_replica(self, name: str, pid: int) -> None:
        """SIGKILL one replica, checked to be the one named (a pid may have been reused)."""
        assert self.replica_pids(name.rsplit("-", 1)[0].replace("-", "_")).get(name) == pid, name
        os.kill(pid, signal.SIGKILL)

    def stack_env(self, name: str) -> str:
        for line in (self.folder / "stack.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value.strip("'")
        raise KeyError(name)

    def token(self, user: str) -> str:
        secret = json.loads((self.folder / "secrets.json").read_text())["jwt_hs256_secret"]
        now = int(time.time())
        claims = {"sub": user, "member": True, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, secret, algorithm="HS256")

    def _session_processes(self) -> list[psutil.Process]:
        assert self.process is not None
        found = []
        for process in psutil.process_iter():
            try:
                if os.getpgid(process.pid) == self.process.pid and process.status() != "zombie":
                    found.append(process)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return found

    def stop(self) -> int:
        """Stop make run as Ctrl-C would; its exit code. Every process it started has exited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        returncode = self.process.wait(30)
        assert self._session_processes() == [], "make run left processes behind"
        return returncode

    def kill_leftovers(self) -> None:
        """Whatever a failed test left running: the stack, then anything of its session."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for process in self._session_processes():
            process.kill()
