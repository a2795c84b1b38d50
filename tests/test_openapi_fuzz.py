"""A schema-driven fuzz run over the gateway's /openapi.json, against the whole platform.

schemathesis generates requests from the published document for every operation (its examples,
then boundary values of every schema — the coverage phase —, then random ones), sends them with
a valid user token, and checks each answer: never a 5xx, and nothing the document does not say
(status codes, content types, response bodies). A failure means the gateway and its document
disagree: fix whichever is wrong.

Bounded and deterministic: a fixed seed, derandomized generation (the same cases on every run),
a fixed number of random examples per operation, no example database.

The test is synchronous (schemathesis' pytest integration calls the API with a blocking client),
so the platform runs on its own event loop in a thread for this module.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import hypothesis
import pytest
import schemathesis
from harness import running_platform
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from gateway.app import create_app
from gateway.environment import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    # Methods the document does not list: 405 with an Allow header, and OPTIONS naming them all.
    unsupported_method,
    allow_header_conformance,
]
FUZZ_USER = "openapi-fuzzer"
# Random examples per operation (about 15 operations), after the examples and coverage phases.
MAX_EXAMPLES = 30


@dataclass
class FuzzTarget:
    base_url: str
    token: str


class _PlatformThread(threading.Thread):
    """The whole platform (tests/harness.py) on a fresh database, served from this thread."""

    def __init__(self, postgres_url: str, redis_url: str) -> None:
        super().__init__(name="fuzz-platform", daemon=True)
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        self.ready = threading.Event()
        self.target: FuzzTarget | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:
            self.error = err
        finally:
            self.ready.set()

    async def _serve(self) -> None:
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(self.postgres_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        # The path is the database; an embedded server's socket folder is in the query.
        database_url = urlunsplit(urlsplit(self.postgres_url)._replace(path=f"/{name}"))
        try:
            prefix = f"t{uuid.uuid4().hex[:12]}:"
            async with running_platform(database_url, self.redis_url, prefix) as platform:
                await platform.grant(FUZZ_USER, 5_000_000)
                self.target = FuzzTarget(platform.gateway_url, platform.token(FUZZ_USER))
                self._loop = asyncio.get_running_loop()
                self._stopping = asyncio.Event()
                self.ready.set()
                await self._stopping.wait()
        finally:
            admin = await asyncpg.connect(self.postgres_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=60)


@pytest.fixture(scope="module")
def fuzz_target(postgres_url: str, redis_url: str) -> Iterator[FuzzTarget]:
    thread = _PlatformThread(postgres_url, redis_url)
    thread.start()
    thread.ready.wait(timeout=120)
    try:
        if thread.target is None:
            raise RuntimeError("the platform did not start") from thread.error
        yield thread.target
    finally:
        thread.stop()
    if thread.error is not None:
        raise thread.error


def _gateway_document() -> dict:
    """The gateway's OpenAPI document, from its app (the document does not depend on settings);
    test_the_served_document_is_the_one_fuzzed checks that the platform serves this one."""
    settings = Settings(environment="test", jwt_hs256_secret="d" * 32, tracing=False)
    return create_app(settings).openapi()


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 7,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "no-shrink": True,
        },
        # Stateful links are not documented; each operation is fuzzed on its own.
        "phases": {
            "coverage": {
                "unexpected-methods": ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]
            },
            "stateful": {"enabled": False},
        },
    }
)
DOCUMENT = _gateway_document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def test_the_served_document_is_the_one_fuzzed(fuzz_target: FuzzTarget) -> None:
    served = httpx.get(f"{fuzz_target.base_url}/openapi.json", timeout=10)
    assert served.json() == DOCUMENT


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_the_gateway_answers_as_its_openapi_document_says(
    case: schemathesis.Case, fuzz_target: FuzzTarget
) -> None:
    headers = {"authorization": f"Bearer {fuzz_target.token}"}
    response = case.call(base_url=fuzz_target.base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=headers)
