"""`make run` loses no usage event: its Redis persists and a crashed service is started again.

Each test runs the real `python -m devstack` in a session of its own, on a folder and gateway
port of its own, on this test's Postgres database (DATABASE_URL) and devstack's own embedded
Redis; requests go through the gateway with the official openai SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import jwt
import openai
import psutil
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam
from waiting import eventually

from devstack.__main__ import STARTING_BALANCE_MICROS
from devstack.embedded import stack_redis

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
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "count for me"}]


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

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _OUTSIDE_SETTINGS}
        env.update(
            DEVSTACK_DIR=str(self.folder),
            GATEWAY_PORT=str(self.port),
            DATABASE_URL=self.database_url,
            LOG_LEVEL="WARNING",
        )
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


@pytest.fixture
def devstack_folder() -> Iterator[Path]:
    # Not tmp_path: the embedded Redis's unix socket path must stay under ~100 characters.
    folder = Path(tempfile.mkdtemp(prefix="devstack-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def make_run(database_url: str, devstack_folder: Path) -> AsyncIterator[DevStack]:
    stack = DevStack(devstack_folder, database_url)
    try:
        yield stack
    finally:
        stack.kill_leftovers()


async def _fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


@pytest.mark.timeout(90)
async def test_a_billing_svc_killed_mid_burst_is_restarted_and_every_answer_charged_once(
    make_run: DevStack,
) -> None:
    make_run.start()
    await make_run.wait_ready()
    user = "alice"
    client = openai.AsyncOpenAI(
        base_url=f"{make_run.gateway_url}/api/text-proxy/v1",
        api_key=make_run.token(user),
        max_retries=0,  # one request, one answer or one error: the count below is exact
        timeout=30.0,
    )
    # Answers take a second, so requests hold credits and are still being answered (their usage
    # events not yet published) when billing-svc dies.
    openai_port = _demo_port(make_run, "openai")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{openai_port}/_stand_in/behaviour", json={"first_byte_delay_s": 1.0}
        )
        assert response.status_code == 200, response.text

    billing_pid = make_run.service_pid("billing_svc")
    assert billing_pid is not None
    requests, kill_after = 30, 10
    answered = 0
    failures: list[str] = []
    held_when_killed: list[int] = []
    slots = asyncio.Semaphore(6)

    async def one_request() -> None:
        nonlocal answered
        async with slots:
            try:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=16
                )
            except openai.APIError as error:
                failures.append(f"{type(error).__name__}: {error}")
                return
            answered += 1
            if answered == kill_after:
                os.kill(billing_pid, signal.SIGKILL)
                rows = await _fetch(
                    make_run.database_url,
                    "SELECT count(*) AS n FROM billing.holds WHERE user_id = $1"
                    " AND status = 'open'",
                    user,
                )
                held_when_killed.append(rows[0]["n"])

    await asyncio.gather(*(one_request() for _ in range(requests)))
    await client.close()
    assert held_when_killed and held_when_killed[0] > 0, "no request was in flight at the kill"
    assert answered > kill_after, failures

    async def charged_for_every_answer() -> bool:
        restarted = make_run.service_pid("billing_svc")
        if restarted is None or restarted == billing_pid:
            return False
        rows = await _fetch(
            make_run.database_url,
            "SELECT count(*) AS n FROM billing.ledger WHERE user_id = $1 AND kind = 'charge'",
            user,
        )
        return bool(rows[0]["n"] >= answered)

    await eventually(
        charged_for_every_answer,
        within_s=30.0,
        what="billing-svc restarted and a charge for every answered request",
    )
    assert make_run.process is not None and make_run.process.poll() is None, make_run.log()
    charges = await _fetch(
        make_run.database_url,
        "SELECT amount_micros, cost_micros, shortfall_micros FROM billing.ledger"
        " WHERE user_id = $1 AND kind = 'charge'",
        user,
    )
    assert len(charges) == answered  # one charge per answered request: none lost, none twice
    assert all(c["cost_micros"] > 0 and c["shortfall_micros"] == 0 for c in charges)
    async with httpx.AsyncClient(base_url=make_run.gateway_url) as http:
        response = await http.get(
            "/api/billing/balance", headers={"authorization": f"Bearer {make_run.token(user)}"}
        )
    assert response.status_code == 200, response.text
    balance = response.json()
    spent = -sum(c["amount_micros"] for c in charges)
    # A request that failed while billing-svc was down may have left a hold that expires later.
    assert balance["balance_micros"] + balance["held_micros"] == STARTING_BALANCE_MICROS - spent
    assert "billing-svc killed by SIGKILL; restarting it" in make_run.log()


def _demo_port(stack: DevStack, provider: str) -> int:
    assert stack.process is not None
    for child in psutil.Process(stack.process.pid).children():
        args = child.cmdline()
        if args[1:3] == ["-m", "provider_stand_ins"] and provider in args:
            return int(args[args.index("--port") + 1])
    raise AssertionError(f"no demo {provider} stand-in")


@pytest.mark.timeout(90)
async def test_make_run_stopped_leaves_its_redis_with_the_streams_groups_and_pending_entries(
    make_run: DevStack,
) -> None:
    make_run.start()
    await make_run.wait_ready()
    redis_url = make_run.stack_env("BILLING_SVC_REDIS_URL")
    stream, group = "devstack-test:events", "devstack-test"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        ids = [await redis.xadd(stream, {"n": str(n)}) for n in range(3)]
        await redis.xgroup_create(stream, group, id="0")
        # Read and never acknowledged: pending, as a consumer that died leaves them.
        await redis.xreadgroup(group, "consumer-that-died", {stream: ">"}, count=2)
        assert b"billing" in [g["name"] for g in await redis.xinfo_groups("usage-events")]
    finally:
        await redis.aclose()
    assert make_run.stop() == 0

    # make run's Redis started again on the same folder, as the next `make run` starts it.
    server = stack_redis(make_run.folder)
    try:
        assert server.url == redis_url
        redis = aioredis.Redis.from_url(redis_url)
        try:
            entries = await redis.xrange(stream) or []
            assert [entry_id for entry_id, _ in entries] == ids
            pending = await redis.xpending(stream, group)
            assert pending["pending"] == 2
            assert pending["consumers"] == [{"name": b"consumer-that-died", "pending": 2}]
            assert b"billing" in [g["name"] for g in await redis.xinfo_groups("usage-events")]
        finally:
            await redis.aclose()
    finally:
        server.stop()
