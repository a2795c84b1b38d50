"""`make bench`: the platform's overhead against direct calls to the provider stand-in, same run.

Every service runs as its own process, as in production: a minimal OpenAI-shaped fake provider
(bench.fake_provider, raw asyncio, 20-word replies), settings-svc, billing-svc, text-svc and the
gateway, plus a second text-svc on operator defaults (no settings-svc) to price config resolution.
Load generators run in their own processes. Results go to docs/benchmarks.md as figures and as
ratios against the direct call.

Sections (all by default; `make bench ONLY=cpu,paced` or `--only cpu,paced` runs some, and the
report keeps the other sections' last figures, from .devstack/bench/results.json, with their date):

- base: latency and throughput against direct, streams, config resolution, settlement, consumer;
- cpu: the platform's CPU per request and per streamed chunk under wrk (bench.cost);
- paced: paced streams, time to first chunk, gaps, most streams held (bench.cost);
- replicas: one and two text-svc replicas behind one gateway (bench.cost);
- images: the image path's relay latency, overhead and memory, on platforms of its own
  (bench.images; `make bench ONLY=images` starts no text stack).

`--profile DIR` also records py-spy profiles (raw, collapsed stacks) of the gateway and text-svc
under the cpu section's member load, into DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import httpx
import jwt

from bench import cost, images
from bench.load import Job
from bench.meter import Meter
from bench.wrk import ensure_wrk
from devstack.__main__ import Stack, free_port
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / ".devstack" / "bench" / "results.json"
SECTIONS = ("base", "cpu", "paced", "replicas", "images")
PLATFORM_KEY = "sk-bench-platform-key-0000000000"
USER_KEY = "sk-bench-user-key-1111111111111"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "benchmark this"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


def load(job: Job) -> dict:
    """Run one load job in the load-generator process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(
            [sys.executable, "-m", "bench.load", str(out)],
            input=json.dumps(asdict(job)),
            text=True,
            check=True,
            cwd=ROOT,
        )
        result = json.loads(out.read_text())
    if result["errors"]:
        raise SystemExit(f"{result['errors']} errors against {job.url}: {result['error_sample']}")
    return result


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def summary(result: dict, key: str = "latencies_ms") -> dict:
    values = result[key]
    return {
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "rps": len(result["latencies_ms"]) / result["elapsed_s"],
    }


def infra(stack: Stack) -> tuple[str, str]:
    """Admin Postgres URL and Redis URL: the environment's, else the machine's, else embedded."""
    pg = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    rd = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    if not pg:
        server = EmbeddedPostgres(Path(".devstack/bench/postgres").resolve())
        stack.embedded.append(server)
        pg = server.url
    if not rd:
        server_r = EmbeddedRedis(Path(".devstack/bench/redis").resolve())
        stack.embedded.append(server_r)
        rd = server_r.url
    return pg, rd


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def check_alive(stack: Stack) -> None:
    """A service that exited ends the bench (no restarts: a crash is a finding)."""
    for service in stack.supervisor.services:
        if service.process is not None and service.process.poll() is not None:
            raise SystemExit(
                f"{service.name} exited ({service.process.returncode}); see {service.log_path}"
            )


def pid_of(stack: Stack, name: str) -> int:
    return next(s.pid for s in stack.supervisor.services if s.name == name and s.pid)


def wait_http(stack: Stack, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(stack)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


async def wait_grpc(port: int, within_s: float = 60) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + within_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"gRPC service on {port} did not become ready")


async def grpc_latency(ports: list[int], token: str, user: str, n: int) -> list[list[float]]:
    """Generate over gRPC at concurrency 1, as an internal service would call text-svc.

    The services are called in turn (a, b, a, b, ...) so that the machine's load drifts alike
    for each, and their difference is the difference of the services.
    """
    metadata = outgoing_metadata(token, user_id=user, is_member=True)
    request = text_pb2.GenerateRequest(
        model="gpt-4o-mini", messages=[text_pb2.ChatMessage(role="user", content="benchmark this")]
    )
    out: list[list[float]] = [[] for _ in ports]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in ports]
    stubs = [text_pb2_grpc.TextServiceStub(channel) for channel in channels]
    try:
        for i in range(n + 50):
            for stub, timings in zip(stubs, out, strict=True):
                start = time.perf_counter()
                await stub.Generate(request, metadata=metadata, timeout=10)
                if i >= 50:
                    timings.append((time.perf_counter() - start) * 1000)
    finally:
        for channel in channels:
            await channel.close()
    return out


async def settle_latency(gateway: str, token: str, database_url: str, n: int) -> list[float]:
    """From the end of a member request to its charge in the ledger (the balance updated)."""
    conn = await asyncpg.connect(database_url)
    out = []
    try:
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
            for _ in range(n):
                response = await http.post(
                    "/api/text-proxy/v1/chat/completions",
                    json=BODY,
                    headers={"authorization": f"Bearer {token}"},
                )
                response.raise_for_status()
                ended = time.perf_counter()
                # The usage event's id is the one text-svc minted for the call (never the
                # client's x-request-id): the completion id carries it.
                request_id = response.json()["id"].removeprefix("chatcmpl-")
                # The charge is made by another process: poll its database.
                query = "SELECT 1 FROM billing.ledger WHERE event_id = $1"
                while not await conn.fetchval(query, request_id):  # noqa: ASYNC110
                    await asyncio.sleep(0.0005)
                out.append((time.perf_counter() - ended) * 1000)
    finally:
        await conn.close()
    return out


def service_env(secret: str, pfx: str, name: str, **values: str) -> dict[str, str]:
    """A bench service's environment: its service token, production mode, quiet logs, and
    `values` as <pfx><NAME>."""
    out = {
        f"{pfx}SERVICE_TOKEN_SECRET": secret,
        f"{pfx}SERVICE_TOKEN": mint_service_token(secret, name),
        f"{pfx}ENVIRONMENT": "production",
        f"{pfx}LOG_LEVEL": "WARNING",
    }
    out.update({f"{pfx}{k.upper()}": v for k, v in values.items()})
    return out


def spawn_services(
    stack: Stack,
    *,
    secret: str,
    database_url: str,
    redis_url: str,
    prefix: str,
    provider: str,
    text_replicas: int = 1,
) -> dict[str, int]:
    """settings-svc, billing-svc and `text_replicas` text-svc processes (member users get a
    large starting balance); returns their ports: settings, billing, text, text_2, ... Each
    text-svc replica calls the fake provider under its own base URL (<provider>/t1/v1, /t2/v1),
    so the provider's per-URL counts are each replica's share."""
    ports = {n: free_port() for n in ("settings", "billing")}
    stack.spawn(
        "settings-svc",
        "settings_svc",
        service_env(
            secret,
            "SETTINGS_SVC_",
            "settings-svc",
            listen=f"127.0.0.1:{ports['settings']}",
            database_url=database_url,
            redis_url=redis_url,
            settings_changed_channel=f"{prefix}settings-changed",
            encryption_keys="bench:" + "A" * 43 + "=",
        ),
    )
    stack.spawn(
        "billing-svc",
        "billing_svc",
        service_env(
            secret,
            "BILLING_SVC_",
            "billing-svc",
            listen=f"127.0.0.1:{ports['billing']}",
            database_url=database_url,
            redis_url=redis_url,
            usage_stream=f"{prefix}usage-events",
            dead_letter_stream=f"{prefix}usage-dead",
            starting_balance_micros="1000000000000",
        ),
    )
    for n in range(1, text_replicas + 1):
        port = ports["text" if n == 1 else f"text_{n}"] = free_port()
        stack.spawn(
            "text-svc" if n == 1 else f"text-svc-{n}",
            "text_svc",
            service_env(
                secret,
                "TEXT_SVC_",
                "text-svc",
                listen=f"127.0.0.1:{port}",
                settings_target=f"127.0.0.1:{ports['settings']}",
                billing_target=f"127.0.0.1:{ports['billing']}",
                redis_url=redis_url,
                usage_stream=f"{prefix}usage-events",
                settings_changed_channel=f"{prefix}settings-changed",
                openai_base_url=f"{provider}/t{n}/v1",
                openai_api_key=PLATFORM_KEY,
            ),
        )
    return ports


def gateway_env(secret: str, jwt_secret: str, ports: dict[str, int], text_target: str) -> dict:
    """A gateway's environment in front of `spawn_services`' services (host and port apart)."""
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_JWT_HS256_SECRET": jwt_secret,
        "GATEWAY_TEXT_TARGET": text_target,
        "GATEWAY_SETTINGS_TARGET": f"127.0.0.1:{ports['settings']}",
        "GATEWAY_BILLING_TARGET": f"127.0.0.1:{ports['billing']}",
        "GATEWAY_SERVICE_TOKEN": mint_service_token(secret, "gateway"),
        "GATEWAY_LOG_LEVEL": "WARNING",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--only",
        default=os.environ.get("ONLY", ""),
        help=f"comma-separated sections of {','.join(SECTIONS)} (default: all; also ONLY=...)",
    )
    parser.add_argument("--profile", type=Path, help="write py-spy profiles here (cpu section)")
    args = parser.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    scale = 0.2 if args.quick else 1.0
    n_lat = int(2000 * scale)
    n_tput = int(10000 * scale)

    done: dict[str, dict] = {}
    if "images" in only:
        print("images ...", flush=True)  # noqa: T201
        done["images"] = images.measure(quick=args.quick)
        if only == ["images"]:
            publish(done, args.quick, args.out)
            return
    stack = Stack(logs=ROOT / ".devstack" / "bench" / "logs")
    secret = uuid.uuid4().hex
    jwt_secret = uuid.uuid4().hex * 2
    try:
        admin_pg, redis_url = infra(stack)
        db_name = f"bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_create_db(admin_pg, db_name))
        database_url = with_database(admin_pg, db_name)
        prefix = f"bench{uuid.uuid4().hex[:6]}:"

        stand_in_port = free_port()
        stack.spawn("fake-provider", "bench.fake_provider", {}, "--port", str(stand_in_port))
        stand_in = f"http://127.0.0.1:{stand_in_port}"

        ports = spawn_services(
            stack,
            secret=secret,
            database_url=database_url,
            redis_url=redis_url,
            prefix=prefix,
            provider=stand_in,
            text_replicas=2 if "replicas" in only else 1,
        )
        replica_ports = [ports[n] for n in ("text", "text_2") if n in ports]
        ports["text_defaults"] = free_port()
        stack.spawn(
            "text-svc-defaults",
            "text_svc",
            service_env(
                secret,
                "TEXT_SVC_",
                "text-svc",
                listen=f"127.0.0.1:{ports['text_defaults']}",
                redis_url=redis_url,
                usage_stream=f"{prefix}usage-events-defaults",
                openai_base_url=f"{stand_in}/v1",
                openai_api_key=PLATFORM_KEY,
            ),
        )

        def spawn_gateway(name: str, text_target: str) -> str:
            port = free_port()
            stack.spawn(
                name,
                "gateway",
                {
                    **gateway_env(secret, jwt_secret, ports, text_target),
                    "GATEWAY_PORT": str(port),
                },
            )
            return f"http://127.0.0.1:{port}"

        gateway = spawn_gateway("gateway", f"127.0.0.1:{ports['text']}")
        pair_gateway = ""
        if "replicas" in only:
            # The same address-list target `make run REPLICAS=2` gives callers.
            pair_gateway = spawn_gateway(
                "gateway-pair", "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in replica_ports)
            )
        wait_http(stack, f"{stand_in}/_fake/stats")
        for p in ports.values():
            asyncio.run(wait_grpc(p))
        wait_http(stack, f"{gateway}/readyz")
        if pair_gateway:
            wait_http(stack, f"{pair_gateway}/readyz")

        def token(user: str) -> str:
            return jwt.encode(
                {"sub": user, "member": True, "exp": int(time.time()) + 3600}, jwt_secret, "HS256"
            )

        member, byok = token("bench-member"), token("bench-byok")
        with httpx.Client(base_url=gateway, timeout=10) as http:
            auth = {"authorization": f"Bearer {byok}"}
            http.put(
                "/api/settings/llm/text",
                json={"provider": "openai", "model": "gpt-4o-mini", "mode": "byok"},
                headers=auth,
            ).raise_for_status()
            http.put(
                "/api/settings/llm/text/api-key", json={"api_key": USER_KEY}, headers=auth
            ).raise_for_status()
            http.put(
                "/api/settings/llm/text",
                json={"provider": "openai", "model": "gpt-4o-mini", "mode": "member"},
                headers={"authorization": f"Bearer {member}"},
            ).raise_for_status()

        direct_url = f"{stand_in}/v1/chat/completions"
        proxy_url = f"{gateway}/api/text-proxy/v1/chat/completions"
        direct_h = {"authorization": f"Bearer {PLATFORM_KEY}"}
        byok_h = {"authorization": f"Bearer {byok}"}
        member_h = {"authorization": f"Bearer {member}"}

        results: dict[str, dict] = {}
        if "base" in only:
            print("latency at concurrency 1 ...", flush=True)  # noqa: T201
            results["direct_c1"] = summary(load(Job(direct_url, BODY, direct_h, 1, n_lat)))
            results["byok_c1"] = summary(load(Job(proxy_url, BODY, byok_h, 1, n_lat)))
            results["member_c1"] = summary(load(Job(proxy_url, BODY, member_h, 1, n_lat)))
            print("throughput at concurrency 50 ...", flush=True)  # noqa: T201
            results["direct_c50"] = summary(load(Job(direct_url, BODY, direct_h, 50, n_tput)))
            results["byok_c50"] = summary(load(Job(proxy_url, BODY, byok_h, 50, n_tput)))
            results["member_c50"] = summary(load(Job(proxy_url, BODY, member_h, 50, n_tput)))
            print("streams ...", flush=True)  # noqa: T201
            results["direct_stream_c1"] = summary(
                load(Job(direct_url, STREAM_BODY, direct_h, 1, n_lat // 2, stream=True)),
                "first_chunk_ms",
            )
            results["byok_stream_c1"] = summary(
                load(Job(proxy_url, STREAM_BODY, byok_h, 1, n_lat // 2, stream=True)),
                "first_chunk_ms",
            )
            results["direct_stream_c50"] = summary(
                load(Job(direct_url, STREAM_BODY, direct_h, 50, n_tput // 2, stream=True)),
                "first_chunk_ms",
            )
            results["byok_stream_c50"] = summary(
                load(Job(proxy_url, STREAM_BODY, byok_h, 50, n_tput // 2, stream=True)),
                "first_chunk_ms",
            )
            print("config resolution (gRPC, concurrency 1) ...", flush=True)  # noqa: T201
            text_token = mint_service_token(secret, "bench")
            resolved, defaults = asyncio.run(
                grpc_latency(
                    [ports["text"], ports["text_defaults"]], text_token, "bench-byok", n_lat
                )
            )
            results["grpc_settings_c1"] = {"p50": pct(resolved, 50), "p99": pct(resolved, 99)}
            results["grpc_defaults_c1"] = {"p50": pct(defaults, 50), "p99": pct(defaults, 99)}
            print("request end to balance updated ...", flush=True)  # noqa: T201
            settle = asyncio.run(settle_latency(gateway, member, database_url, int(200 * scale)))
            results["settle"] = {"p50": pct(settle, 50), "p99": pct(settle, 99)}
            print("usage events applied by one consumer ...", flush=True)  # noqa: T201
            from bench.billing_consumer import run_bench

            consumer = asyncio.run(run_bench(admin_pg, redis_url, events=int(20000 * scale)))
            results["consumer"] = asdict(consumer)
        if "base" in only:
            done["base"] = results
        if {"cpu", "paced", "replicas"} & set(only):
            services = ["gateway", "text-svc", "settings-svc", "billing-svc"]
            meter = Meter(
                {name: [pid_of(stack, name)] for name in services}, database_url, db_name, redis_url
            )
            ctx = cost.Context(
                gateway=gateway,
                fake=stand_in,
                fake_pid=pid_of(stack, "fake-provider"),
                member=member,
                byok=byok,
                meter=meter,
                wrk=ensure_wrk() if {"cpu", "replicas"} & set(only) else None,
                scale=scale,
                pair_gateway=pair_gateway,
                profile_pids={n: pid_of(stack, n) for n in ("gateway", "text-svc")},
                profile_dir=args.profile,
            )
            for name, section in (
                ("cpu", cost.cpu_section),
                ("paced", cost.paced_section),
                ("replicas", cost.replicas_section),
            ):
                if name in only:
                    print(f"{name} ...", flush=True)  # noqa: T201
                    done[name] = section(ctx)
        asyncio.run(_drop_db(admin_pg, db_name))
    finally:
        stack.stop()
    publish(done, args.quick, args.out)


def publish(done: dict[str, dict], quick: bool, out: str) -> None:
    """Keep the sections just measured in results.json and write the report from all of them."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load1 = os.getloadavg()[0]
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name, figures in done.items():
        saved[name] = {"at": stamp, "quick": quick, "load": load1, "figures": figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=1))
    report = render_all(saved)
    Path(out).write_text(report)
    print(report)  # noqa: T201


async def _create_db(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_db(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def render_base(r: dict) -> list[str]:
    def ms(x: float) -> str:
        return f"{x:.2f} ms"

    d1, b1, m1 = r["direct_c1"], r["byok_c1"], r["member_c1"]
    d50, b50, m50 = r["direct_c50"], r["byok_c50"], r["member_c50"]
    ds1, bs1 = r["direct_stream_c1"], r["byok_stream_c1"]
    ds50, bs50 = r["direct_stream_c50"], r["byok_stream_c50"]
    gs, gd = r["grpc_settings_c1"], r["grpc_defaults_c1"]
    lines = [
        "### Latency and throughput against direct",
        "",
        "Load from bench/load.py (aiohttp, its own process).",
        "",
        "Non-streaming requests (20-word replies). *Overhead* is the proxied figure minus the direct one.",
        "",
        "| path | c=1 p50 | c=1 p99 | c=50 p50 | c=50 p99 | c=50 req/s | req/s vs direct |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a, b in (
        ("direct to stand-in", d1, d50),
        ("gateway, BYOK", b1, b50),
        ("gateway, member", m1, m50),
    ):
        lines.append(
            f"| {name} | {ms(a['p50'])} | {ms(a['p99'])} | {ms(b['p50'])} | {ms(b['p99'])} | "
            f"{b['rps']:.0f} | {b['rps'] / d50['rps']:.2f}x |"
        )
    lines += [
        "",
        f"- Overhead at c=1, BYOK: p50 **{ms(b1['p50'] - d1['p50'])}**, p99 {ms(b1['p99'] - d1['p99'])} (target p50 ≤ 1.5 ms).",
        f"- Overhead at c=1, member mode: p50 **{ms(m1['p50'] - d1['p50'])}**; member against BYOK: "
        f"**{ms(m1['p50'] - b1['p50'])}** p50 (target ≤ 1 ms).",
        f"- Throughput at c=50: BYOK **{b50['rps']:.0f} req/s**, member {m50['rps']:.0f} req/s (target ≥ 1,000).",
        "",
        "Streams of 20 chunks with the usage chunk (time to first chunk):",
        "",
        "| path | c=1 TTFC p50 | c=1 TTFC p99 | c=50 TTFC p50 | c=50 streams/s | streams/s vs direct |",
        "|---|---|---|---|---|---|",
        f"| direct to stand-in | {ms(ds1['p50'])} | {ms(ds1['p99'])} | {ms(ds50['p50'])} | {ds50['rps']:.0f} | 1.00x |",
        f"| gateway, BYOK | {ms(bs1['p50'])} | {ms(bs1['p99'])} | {ms(bs50['p50'])} | {bs50['rps']:.0f} | {bs50['rps'] / ds50['rps']:.2f}x |",
        "",
        f"- Time-to-first-chunk overhead at c=1: p50 **{ms(bs1['p50'] - ds1['p50'])}**.",
        f"- Streams/s at c=50 through the full path: **{bs50['rps']:.0f}** (target ≥ 400).",
        "",
        "Config resolution (text-svc over gRPC at c=1, no gateway): with settings-svc (cached) "
        f"p50 {ms(gs['p50'])}, with operator defaults p50 {ms(gd['p50'])}: resolution adds "
        f"**{ms(gs['p50'] - gd['p50'])}** p50 (target ≤ 0.3 ms).",
        "",
        f"Usage events: one billing consumer applied **{r['consumer']['events_per_s']:,} events/s** "
        f"({r['consumer']['events']:,} events, batches of {r['consumer']['batch_size']}; target ≥ 3,000/s). "
        f"From the end of a member request to its charge in the ledger: p50 {ms(r['settle']['p50'])}, "
        f"p99 {ms(r['settle']['p99'])}.",
        "",
    ]
    return lines


def render_all(saved: dict) -> str:
    """docs/benchmarks.md from every section's last figures, each with when it was measured."""
    lines = [
        "# Benchmarks",
        "",
        f"`make bench` on {os.cpu_count()} cores ({host.machine()}). Every service, the fake "
        "provider and the load generators share these cores (and, on a shared machine, whatever "
        "else runs), so figures are given beside the direct call to the fake provider measured in "
        "the same run, and CPU is counted per request from `/proc`, which is far steadier than "
        "requests/s. `make bench ONLY=cpu,paced` re-runs some sections; each says when it ran.",
        "",
    ]
    renderers = {
        "base": render_base,
        "cpu": cost.render_cpu,
        "paced": cost.render_paced,
        "replicas": cost.render_replicas,
        "images": images.render,
    }
    for name in SECTIONS:
        if name not in saved:
            lines += [f"*Section `{name}` not measured yet here: `make bench ONLY={name}`.*", ""]
            continue
        entry = saved[name]
        section = renderers[name](entry["figures"])
        when = (
            f"*Measured {entry['at']}{' (--quick)' if entry['quick'] else ''}, load average "
            f"{entry['load']:.1f} at the end of the run.*"
        )
        lines += [section[0], "", when, *section[1:]]
    lines += [
        "What limits these figures, with the profiles behind it: [performance.md](performance.md).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
