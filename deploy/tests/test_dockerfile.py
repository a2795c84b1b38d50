"""The one image (Dockerfile, .dockerignore): installed from uv.lock with --frozen and without dev
packages, no provider stand-ins, devstack or tests inside, a non-root user and a HEALTHCHECK; and
the health check itself against a real gRPC health service and a real HTTP server.

No Docker engine is needed: the Dockerfile is read, .dockerignore is applied with Docker's rules,
and the check script runs here.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import importlib.util
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SERVICES = ("gateway", "text-svc", "multimodal-svc", "image-svc", "settings-svc", "billing-svc")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), " ".join(rest.split())))
    return result


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    steps = instructions(text)
    runs = " ; ".join(args for word, args in steps if word == "RUN")
    syncs = [
        (sync, run)
        for word, run in steps
        if word == "RUN"
        for sync in re.findall(r"uv sync[^;&|]*", run)
    ]
    if not syncs:
        problems.append("no `uv sync`: not installed from uv.lock")
    for sync, run in syncs:
        if "--frozen" not in sync and "--locked" not in sync:
            problems.append("uv sync without --frozen: may re-resolve instead of using uv.lock")
        if "--no-dev" not in sync:
            problems.append("uv sync installs the dev group")
        if "--all-packages" in sync or "--group" in sync or "--all-groups" in sync:
            problems.append("uv sync installs more than the services (--all-packages / groups)")
        if "--package" not in run:
            problems.append("uv sync installs the root project, which lists stand-ins and devstack")
    if re.search(r"pip install[^;&|]*(-r |requirements)", runs):
        problems.append("pip installs from outside the lock file")
    if not re.search(r"pip install[^;&|]*uv==\d", runs):
        problems.append("uv is not pinned")
    copies = [args for word, args in steps if word in ("COPY", "ADD")]
    for args in copies:
        if re.search(r"(^|\s)(stand-ins|devstack)\b|/tests?\b", args):
            problems.append(f"copies stand-ins, devstack or tests: COPY {args}")
    if not any("uv.lock" in args or args.startswith(". ") for args in copies):
        problems.append("uv.lock is not copied into the build")
    last_stage = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    final_users = [
        args for i, (word, args) in enumerate(steps) if word == "USER" and i > last_stage
    ]
    if not final_users or final_users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root")
    elif not final_users[-1].split(":")[0].isdigit():
        problems.append("USER is not numeric: Kubernetes' runAsNonRoot cannot verify it")
    if not any(word == "HEALTHCHECK" and "CMD" in args for word, args in steps[last_stage:]):
        problems.append("no HEALTHCHECK")
    return problems


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore lines as (negated, regex), in order (the last match decides)."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern matches the path or one of its parent directories; the last
    pattern that matches decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, regex in patterns:
        if any(regex.fullmatch(c) for c in candidates):
            included = negated
    return included


PRODUCTION_FILES = [
    "uv.lock",
    "pyproject.toml",
    "common/src/svc_common/environment.py",
    "gateway/src/gateway/app.py",
    "text-svc/src/text_svc/server.py",
    "settings-svc/src/settings_svc/migrations/0001_schema.sql",
    "billing-svc/src/billing_svc/migrations/0002_prices.sql",
    "generated/src/grpc_stubs/__init__.py",
    "provider-plumbing/src/upstream/__init__.py",
    "multimodal-svc/src/multimodal_svc/__main__.py",
    "image-svc/src/image_svc/__main__.py",
    # uv reads every workspace member's pyproject.toml, installed or not.
    "stand-ins/pyproject.toml",
    "devstack/pyproject.toml",
    "deploy/docker/healthcheck.py",
]
KEPT_OUT = [
    "stand-ins/src/provider_stand_ins/__init__.py",
    "devstack/src/devstack/__main__.py",
    "gateway/tests/test_gateway_auth.py",
    "billing-svc/tests/conftest.py",
    "tests/harness.py",
    ".venv/bin/python",
    ".devstack/stack.env",
    ".git/config",
    "console/node_modules/vite/package.json",
    "gateway/src/gateway/__pycache__/app.cpython-311.pyc",
]


def context_problems(text: str) -> list[str]:
    patterns = ignore_patterns(text)
    problems = [
        f"{p} is left out of the build" for p in PRODUCTION_FILES if not in_context(p, patterns)
    ]
    problems += [f"{p} goes into the build" for p in KEPT_OUT if in_context(p, patterns)]
    return problems


def test_the_image_installs_production_packages_from_the_lock_as_non_root() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_the_build_context_holds_the_services_but_no_stand_ins_devstack_or_tests() -> None:
    assert context_problems(DOCKERIGNORE.read_text()) == []


def test_the_image_builds_every_service() -> None:
    (arg,) = re.findall(r'ARG SERVICES="([^"]+)"', DOCKERFILE.read_text())
    assert tuple(arg.split()) == SERVICES


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("--frozen ", "", "uv sync without --frozen: may re-resolve instead of using uv.lock"),
        ("--no-dev ", "", "uv sync installs the dev group"),
        (
            "--no-dev ",
            "--all-packages ",
            "uv sync installs more than the services (--all-packages / groups)",
        ),
        ("USER 10001:10001", "USER root", "the image runs as root"),
        (
            "USER 10001:10001",
            "USER app",
            "USER is not numeric: Kubernetes' runAsNonRoot cannot verify it",
        ),
        ("HEALTHCHECK", "# HEALTHCHECK", "no HEALTHCHECK"),
        ("uv==0.13.9", "uv", "uv is not pinned"),
    ],
)
def test_the_dockerfile_check_notices_a_broken_image(old: str, new: str, problem: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    assert problem in dockerfile_problems(text.replace(old, new))


def test_the_dockerfile_check_notices_stand_ins_copied_in() -> None:
    text = DOCKERFILE.read_text() + "\nCOPY stand-ins stand-ins\n"
    assert "copies stand-ins, devstack or tests: COPY stand-ins stand-ins" in dockerfile_problems(
        text
    )


@pytest.mark.parametrize("added", ["!stand-ins/src/", "!devstack/", "!gateway/tests/"])
def test_the_context_check_notices_a_leak(added: str) -> None:
    text = DOCKERIGNORE.read_text().replace("!uv.lock", f"!uv.lock\n{added}")
    assert any(p.endswith("goes into the build") for p in context_problems(text))


# --- the HEALTHCHECK script -----------------------------------------------------------------------


@pytest.fixture
def healthcheck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(
        "healthcheck", ROOT / "deploy/docker/healthcheck.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cmdline = tmp_path / "cmdline"

    def run_as(*argv: str) -> None:
        cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    real = module.service_command
    monkeypatch.setattr(module, "service_command", lambda: real(cmdline))
    module.run_as = run_as  # type: ignore[attr-defined]
    yield module


def test_healthcheck_asks_a_grpc_service_for_its_health(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer = health.HealthServicer()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setenv("BILLING_SVC_LISTEN", f"0.0.0.0:{port}")
        healthcheck.run_as("/opt/venv/bin/python", "-m", "billing_svc")
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert healthcheck.main() == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert healthcheck.main() == 1
        # A one-shot command has nothing to serve.
        healthcheck.run_as("python", "-m", "billing_svc", "migrate")
        assert healthcheck.main() == 0
    finally:
        server.stop(None)
    healthcheck.run_as("python", "-m", "billing_svc")
    assert healthcheck.main() == 1  # nobody answers


def test_healthcheck_asks_the_gateway_for_healthz(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("GATEWAY_PORT", str(server.server_address[1]))
        healthcheck.run_as("python", "-m", "gateway")
        assert healthcheck.main() == 0
        assert paths == ["/healthz"]
    finally:
        server.shutdown()
        server.server_close()
