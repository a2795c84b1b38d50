"""`python -m bench.asgi_servers`: the gateway's own CPU per request and per streamed chunk under
two ASGI servers side by side, on one stack: uvicorn on httptools with the bounded request head
(gateway/server.py, how the gateway is served) and granian (`--interface asgi`, Rust/hyper).

Both gateways run at once in front of the same text-svc (BYOK, so no billing work in the path);
wrk (one thread, 50 connections) loads one, then the other, for a few seconds each, in rounds
whose order alternates, and the CPU of each gateway's processes (granian's worker included) is
read from /proc around each run. Three kinds of work:

- whole answers (non-stream);
- 20-chunk streams written at once by the fake provider (the cpu section's rows; text-svc merges
  what arrived together, so the gateway sends few SSE events per stream);
- 20-chunk streams paced 2 ms apart, so that each chunk reaches the gateway as its own message
  and goes out as its own ASGI send: the per-chunk figure that paced model streams pay.

wrk counts the SSE events it reads (`data: ` lines), so the per-event figure divides by what
was actually sent. The gateway's CPU is also split by thread name (granian's tokio threads apart
from its Python one). A short behaviour probe follows (request-head limits, SSE flush timing).
`--arms uvicorn,granian,granian-rust-tasks` adds granian with its Rust asyncio tasks.

Needs granian in the venv for the measurement only (not a dependency of the project):
`.tools/bin/uv pip install -p .venv/bin/python granian`; without it the granian arms are
skipped. Figures and their reading: docs/performance.md, "ASGI server, side by side".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import jwt

from bench.__main__ import (
    BODY,
    ROOT,
    STREAM_BODY,
    USER_KEY,
    _create_db,
    _drop_db,
    gateway_env,
    infra,
    pid_of,
    spawn_services,
    wait_grpc,
    wait_http,
    with_database,
)
from bench.cost import PROXY_PATH, STREAM_CHUNKS, pct
from bench.meter import TICK, Meter
from bench.streams import StreamJob
from bench.wrk import ensure_wrk
from devstack.__main__ import Stack, free_port

CONCURRENCY = 50
PACED_INTERVAL_MS = 2
# The granian arms and their options beyond the common ones (one worker, uvloop): its defaults,
# and, on request (--arms), its Rust implementation of asyncio tasks.
GRANIAN_ARMS: dict[str, tuple[str, ...]] = {
    "granian": (),
    "granian-rust-tasks": ("--task-impl", "rust"),
}
ARMS = ("uvicorn", *GRANIAN_ARMS)
NONE = "\u2013"

# bench/post.lua plus a count of the SSE events read (one `data: ` per event), summed over
# wrk's threads in done().
COUNTING_LUA = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION")
local threads = {}
function setup(thread) table.insert(threads, thread) end
events = 0
responses = 0
function response(status, headers, body)
  responses = responses + 1
  local _, n = string.gsub(body, "data: ", "")
  events = events + n
end
done = function(summary, latency, requests)
  local ev, rs = 0, 0
  for _, t in ipairs(threads) do ev = ev + t:get("events"); rs = rs + t:get("responses") end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,' ..
    '"events":%d,"responses":%d}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), ev, rs))
end
"""


def gateway_app() -> Any:
    """granian's factory (`--factory bench.asgi_servers:gateway_app`): the gateway's app from
    its environment, as gateway.__main__ builds it for uvicorn."""
    from gateway.app import create_app
    from gateway.environment import Settings
    from svc_common.logging import setup_logging

    settings = Settings()
    setup_logging("gateway", settings.log_level)
    return create_app(settings)


def granian_installed() -> bool:
    return importlib.util.find_spec("granian") is not None


def descendants(pid: int) -> list[int]:
    """pid and every process below it (granian's supervisor forks its worker)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def run_counting_wrk(
    wrk: str, script: Path, url: str, body: dict, token: str, seconds: float
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": json.dumps(body), "BENCH_AUTHORIZATION": f"Bearer {token}"}
    command = [wrk, "-t1", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--timeout", "30s"]
    process = subprocess.Popen(
        [*command, "-s", str(script), url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # communicate() reaps wrk, so its CPU shows in os.times()'s children figures (measure()).
    out, err = process.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({process.returncode}): {err.decode() or out.decode()}")
    result = json.loads(lines[-1])
    result["elapsed_s"] = result["duration_us"] / 1e6
    return result


def thread_cpu(pids: list[int]) -> dict[tuple[int, str], float]:
    """utime + stime of each thread of `pids`, by (thread id, thread name)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rpartition(")")[2].split()
            out[(int(tid), name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def by_thread_name(
    before: dict[tuple[int, str], float], after: dict[tuple[int, str], float]
) -> dict[str, float]:
    """CPU seconds per thread name between two readings; a thread born between counts whole."""
    out: dict[str, float] = {}
    for (tid, name), value in after.items():
        out[name] = out.get(name, 0.0) + value - before.get((tid, name), 0.0)
    return out


def measure(
    meter: Meter,
    wrk: str,
    script: Path,
    url: str,
    body: dict,
    token: str,
    seconds: float,
    gateway_pids: list[int],
) -> dict[str, Any]:
    """One wrk run; ms of CPU per request of each metered group, and of the gateway's threads
    by name (granian's Rust runtime threads apart from the Python one)."""
    wrk_before = os.times()
    threads_before = thread_cpu(gateway_pids)
    meter.start()
    result = run_counting_wrk(wrk, script, url, body, token, seconds)
    reading = meter.stop()
    threads = by_thread_name(threads_before, thread_cpu(gateway_pids))
    wrk_after = os.times()
    n = result["requests"]
    if result["errors"] or not n:
        raise SystemExit(f"{result['errors']} wrk errors against {url}")
    wrk_cpu = (wrk_after.children_user + wrk_after.children_system) - (
        wrk_before.children_user + wrk_before.children_system
    )
    return {
        "requests": n,
        "rps": n / result["elapsed_s"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "events_per_response": result["events"] / max(1, result["responses"]),
        "cpu_ms": {k: v * 1000 / n for k, v in reading.per_group.items()},
        "wrk_ms": wrk_cpu * 1000 / n,
        "gateway_threads_ms": {k: v * 1000 / n for k, v in threads.items() if v > 0},
    }


# --- behaviour --------------------------------------------------------------------------------


def raw_status(port: int, head: bytes, timeout: float = 5.0) -> str:
    """The status line (and a hint of the body) a server answers to `head`, or what happened."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(head)
            except OSError as err:
                return f"send failed ({type(err).__name__})"
            data = b""
            while True:  # every answer here ends with the connection (connection: close)
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
            status = data.split(b"\r\n", 1)[0].decode("latin-1")
            if b"\r\n\r\n" in data:
                rest = data.split(b"\r\n\r\n", 1)[1]
                body = "JSON" if rest.startswith(b"{") else repr(rest[:40].decode("latin-1"))
                return f"{status or 'closed, no answer'} (body {body})"
            return status or "closed, no answer"
    except OSError as err:
        return f"{type(err).__name__}"


def head_probes(port: int) -> dict[str, str]:
    def head(extra: bytes) -> bytes:
        return b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\n" + extra + b"connection: close\r\n\r\n"

    return {
        "plain": raw_status(port, head(b"")),
        "150 headers": raw_status(port, head(b"".join(b"x-h%d: v\r\n" % i for i in range(150)))),
        "one 40 KiB header": raw_status(port, head(b"x-big: " + b"a" * 40 * 1024 + b"\r\n")),
        "one 200 KiB header": raw_status(port, head(b"x-big: " + b"a" * 200 * 1024 + b"\r\n")),
        "one 1 MiB header": raw_status(port, head(b"x-big: " + b"a" * 1024 * 1024 + b"\r\n")),
    }


def flush_probe(gateway: str, token: str) -> dict[str, float]:
    """Paced streams at c=1 (10 chunks 20 ms apart, stamped): each chunk's delay from the fake
    provider's write to the client's read shows whether every send is flushed at once."""
    host, port = gateway.removeprefix("http://").split(":")
    job = StreamJob(
        host=host,
        port=int(port),
        path=PROXY_PATH,
        headers={"authorization": f"Bearer {token}"},
        body=STREAM_BODY,
        concurrency=1,
        chunks=10,
        streams_per_worker=20,
    )
    out = subprocess.run(
        [sys.executable, "-m", "bench.streams"],
        input=json.dumps(asdict(job)),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    r = json.loads(out.stdout)
    return {
        "ttfc_p50_ms": pct(r["ttfc_ms"], 50),
        "delay_p50_ms": pct(r["delays_ms"], 50),
        "delay_p99_ms": pct(r["delays_ms"], 99),
        "delay_max_ms": max(r["delays_ms"]) if r["delays_ms"] else float("nan"),
        "failed": r["failed_streams"] + r["lost_chunks"],
    }


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="each wrk run")
    parser.add_argument("--out", type=Path, default=ROOT / ".devstack/bench/asgi_servers.json")
    parser.add_argument(
        "--arms", default="uvicorn,granian", help=f"comma-separated, of {','.join(ARMS)}"
    )
    args = parser.parse_args()
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if set(arms) - set(ARMS) or "uvicorn" not in arms:
        raise SystemExit(f"--arms: uvicorn and any of {ARMS[1:]}")
    if not granian_installed():
        print(  # noqa: T201
            "granian is not installed in this venv: its arm is skipped. For the measurement only: "
            ".tools/bin/uv pip install -p .venv/bin/python granian",
            flush=True,
        )
        arms = ["uvicorn"]

    stack = Stack(logs=ROOT / ".devstack" / "bench" / "asgi-logs")
    secret = uuid.uuid4().hex
    jwt_secret = uuid.uuid4().hex * 2
    script = Path(tempfile.mkdtemp()) / "count.lua"
    script.write_text(COUNTING_LUA)
    try:
        admin_pg, redis_url = infra(stack)
        db_name = f"bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_create_db(admin_pg, db_name))
        database_url = with_database(admin_pg, db_name)
        prefix = f"bench{uuid.uuid4().hex[:6]}:"

        fake_port = free_port()
        stack.spawn("fake-provider", "bench.fake_provider", {}, "--port", str(fake_port))
        fake = f"http://127.0.0.1:{fake_port}"
        ports = spawn_services(
            stack,
            secret=secret,
            database_url=database_url,
            redis_url=redis_url,
            prefix=prefix,
            provider=fake,
        )
        gateway_ports = {arm: free_port() for arm in arms}
        gateways_env = gateway_env(secret, jwt_secret, ports, f"127.0.0.1:{ports['text']}")
        stack.spawn(
            "gateway-uvicorn",
            "gateway",
            {**gateways_env, "GATEWAY_PORT": str(gateway_ports["uvicorn"])},
        )
        for arm in arms[1:]:
            # One worker, uvloop like uvicorn's; the rest at granian's defaults.
            stack.spawn(
                f"gateway-{arm}",
                "granian",
                {**gateways_env, "GATEWAY_PORT": str(gateway_ports[arm])},
                "--interface",
                "asgi",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(gateway_ports[arm]),
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--log-level",
                "warning",
                "--no-ws",
                *GRANIAN_ARMS[arm],
                "bench.asgi_servers:gateway_app",
            )
        gateways = {arm: f"http://127.0.0.1:{port}" for arm, port in gateway_ports.items()}
        wait_http(stack, f"{fake}/_fake/stats")
        for p in ports.values():
            asyncio.run(wait_grpc(p))
        for url in gateways.values():
            wait_http(stack, f"{url}/readyz")

        byok = jwt.encode(
            {"sub": "bench-byok", "member": True, "exp": int(time.time()) + 3600},
            jwt_secret,
            "HS256",
        )
        with httpx.Client(base_url=gateways["uvicorn"], timeout=10) as http:
            auth = {"authorization": f"Bearer {byok}"}
            http.put(
                "/api/settings/llm/text",
                json={"provider": "openai", "model": "gpt-4o-mini", "mode": "byok"},
                headers=auth,
            ).raise_for_status()
            http.put(
                "/api/settings/llm/text/api-key", json={"api_key": USER_KEY}, headers=auth
            ).raise_for_status()

        pids = {
            "uvicorn": [pid_of(stack, "gateway-uvicorn")],
            "text-svc": [pid_of(stack, "text-svc")],
        }
        for arm in arms[1:]:
            # granian's supervisor apart from its worker, to see what supervising costs.
            main_pid = pid_of(stack, f"gateway-{arm}")
            pids[f"{arm} supervisor"] = [main_pid]
            pids[arm] = [p for p in descendants(main_pid) if p != main_pid]
        meter = Meter(pids, database_url, db_name, redis_url)

        def configure_fake(chunks: int, interval_ms: float, stamp: bool = False) -> None:
            config = {"chunks": chunks, "interval_ms": interval_ms, "stamp": stamp}
            httpx.post(f"{fake}/_fake/config", json=config).raise_for_status()

        works: dict[str, tuple[dict[str, Any], float]] = {
            "non-stream": (BODY, 0.0),
            "stream": (STREAM_BODY, 0.0),
            "paced stream": (STREAM_BODY, PACED_INTERVAL_MS),
        }
        runs: list[dict[str, Any]] = []
        for arm in arms:  # warm up
            configure_fake(STREAM_CHUNKS, 0)
            for warm_body in (BODY, STREAM_BODY):
                run_counting_wrk(wrk, script, gateways[arm] + PROXY_PATH, warm_body, byok, 1)
        for round_no in range(args.rounds):
            order = arms if round_no % 2 == 0 else arms[::-1]
            for work, (body, interval) in works.items():
                configure_fake(STREAM_CHUNKS, interval)
                for arm in order:
                    url = gateways[arm] + PROXY_PATH
                    gateway_pids = pids[arm] + pids.get(f"{arm} supervisor", [])
                    r = measure(meter, wrk, script, url, body, byok, args.seconds, gateway_pids)
                    row = {"round": round_no + 1, "arm": arm, "work": work, **r}
                    row["gateway_ms"] = r["cpu_ms"][arm] + r["cpu_ms"].get(f"{arm} supervisor", 0)
                    runs.append(row)
                    print(  # noqa: T201
                        f"  round {round_no + 1} {work:13} {arm:8} gateway "
                        f"{row['gateway_ms']:.3f} ms/req, text-svc {r['cpu_ms']['text-svc']:.3f}, "
                        f"{r['events_per_response']:.1f} events/resp, {r['rps']:.0f} req/s, "
                        f"p50 {r['p50_ms']:.1f} ms, wrk {r['wrk_ms']:.3f}",
                        flush=True,
                    )
        behaviour: dict[str, Any] = {}
        configure_fake(10, 20, stamp=True)
        for arm in arms:
            behaviour[arm] = {
                "heads": head_probes(gateway_ports[arm]),
                "flush": flush_probe(gateways[arm], byok),
            }
        asyncio.run(_drop_db(admin_pg, db_name))
    finally:
        stack.stop()
    report = {
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": os.getloadavg()[0],
        "seconds": args.seconds,
        "runs": runs,
        "behaviour": behaviour,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("\n".join(render(report)))  # noqa: T201


FIGURES = {
    "request": "per non-stream request",
    "stream": f"per {STREAM_CHUNKS}-chunk stream, written at once",
    "paced_stream": f"per {STREAM_CHUNKS}-chunk stream, paced",
    "paced_chunk": f"per chunk, paced (stream / {STREAM_CHUNKS})",
    "event_slope": "per extra SSE event (paced minus at-once, over the events' difference)",
}


def summary(runs: list[dict[str, Any]], arm: str) -> dict[str, float]:
    """The arm's medians; the slope per SSE event is taken within each round, where the paced
    and at-once runs of an arm ran a few seconds apart."""

    def rows(work: str) -> list[dict[str, Any]]:
        return [r for r in runs if r["arm"] == arm and r["work"] == work]

    slopes = [
        (p["gateway_ms"] - q["gateway_ms"]) / (p["events_per_response"] - q["events_per_response"])
        for p, q in zip(rows("paced stream"), rows("stream"), strict=True)
    ]
    paced = statistics.median(r["gateway_ms"] for r in rows("paced stream"))
    return {
        "request": statistics.median(r["gateway_ms"] for r in rows("non-stream")),
        "stream": statistics.median(r["gateway_ms"] for r in rows("stream")),
        "paced_stream": paced,
        "paced_chunk": paced / STREAM_CHUNKS,
        "event_slope": statistics.median(slopes),
    }


def render(report: dict[str, Any]) -> list[str]:
    runs = report["runs"]
    lines = [
        f"ASGI servers side by side, {report['at']}, load average {report['load']:.1f}; "
        f"wrk -t1 -c{CONCURRENCY}, {report['seconds']:g} s a run, BYOK.",
        "",
        "| round | work | server | gateway CPU / request | per chunk (/20) | SSE events / "
        "stream | per event | text-svc / request | req/s | p50 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        stream = r["work"] != "non-stream"
        events = r["events_per_response"]
        lines.append(
            f"| {r['round']} | {r['work']} | {r['arm']} | {r['gateway_ms']:.3f} ms | "
            + (f"{r['gateway_ms'] / STREAM_CHUNKS:.4f} ms | " if stream else f"{NONE} | ")
            + (
                f"{events:.1f} | {r['gateway_ms'] / events:.4f} ms | "
                if stream
                else f"{NONE} | {NONE} | "
            )
            + f"{r['cpu_ms']['text-svc']:.3f} ms | {r['rps']:.0f} | {r['p50_ms']:.1f} ms | "
            f"{r['p99_ms']:.1f} ms |"
        )
    arms = sorted({r["arm"] for r in runs}, key=ARMS.index)
    figures = {arm: summary(runs, arm) for arm in arms}
    lines += [
        "",
        "Medians over the rounds, ms of the gateway's CPU (granian: supervisor and worker):",
        "",
        "| figure | " + " | ".join(arms) + "".join(f" | {a} / uvicorn" for a in arms[1:]) + " |",
        "|---|" + "---|" * (2 * len(arms) - 1),
    ]
    for key, label in FIGURES.items():
        values = [figures[arm][key] for arm in arms]
        ratios = "".join(f" {v / values[0]:.2f} |" for v in values[1:])
        lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |" + ratios)
    supervisors = []
    for arm in arms[1:]:
        own = [r["cpu_ms"][f"{arm} supervisor"] for r in runs if r["arm"] == arm]
        supervisors.append(f"{arm} {statistics.median(own):.4f} ms")
    lines += ["", "The gateway's CPU per request by thread name (medians, the four largest):", ""]
    for arm in arms:
        for work in ("non-stream", "paced stream"):
            rows = [r["gateway_threads_ms"] for r in runs if r["arm"] == arm and r["work"] == work]
            names = {name for row in rows for name in row}
            medians = {
                name: statistics.median(row.get(name, 0.0) for row in rows) for name in names
            }
            top = sorted(medians.items(), key=lambda item: -item[1])[:4]
            lines.append(
                f"- {arm}, {work}: " + ", ".join(f"`{name}` {ms:.3f} ms" for name, ms in top)
            )
    if supervisors:
        lines += [
            "",
            "Of which granian's supervisor, per request (median): " + ", ".join(supervisors),
        ]
    lines.append("")
    for arm, b in report["behaviour"].items():
        heads = "; ".join(f"{k}: {v}" for k, v in b["heads"].items())
        f = b["flush"]
        lines.append(
            f"- {arm}: {heads}. Paced c=1 stream (10 chunks 20 ms apart): TTFC p50 "
            f"{f['ttfc_p50_ms']:.2f} ms, chunk delay p50 {f['delay_p50_ms']:.2f} / p99 "
            f"{f['delay_p99_ms']:.2f} / max {f['delay_max_ms']:.2f} ms, {f['failed']} failed."
        )
    return lines


if __name__ == "__main__":
    main()
