"""The performance issue's benchmarks (`make bench ONLY=cpu,paced,replicas`), run on the stack
that bench.__main__ starts:

- cpu: the platform's CPU per request (every process of the stack, bench.meter) under wrk at
  concurrency 50, member and BYOK, whole answers and 20-chunk streams;
- paced: streams of 64 chunks 20 ms apart (bench.streams reading the fake provider's stamps):
  added time to first chunk at c=1, added gap between chunks at 200 streams, and the most
  concurrent streams held with no chunk lost or delayed by more than 50 ms;
- replicas: one, then two text-svc replicas behind one gateway at the same concurrency; each
  replica's share counted by the fake provider from the base URL that replica alone calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.meter import Meter, cpu_seconds
from bench.streams import StreamJob
from bench.wrk import WrkResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent
PROXY_PATH = "/api/text-proxy/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "benchmark this"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
CONCURRENCY = 50
STREAM_CHUNKS = 20
PACED_CHUNKS = 64
PACED_INTERVAL_MS = 20
LATE_MS = 50
STEPS = (50, 100, 200, 300, 400)
NONE = "\u2013"  # an en dash: no figure in this cell


@dataclass
class Context:
    gateway: str
    fake: str  # the fake provider's root URL
    fake_pid: int
    member: str  # bearer tokens
    byok: str
    meter: Meter
    wrk: str | None
    scale: float
    pair_gateway: str = ""  # a gateway whose text target lists two text-svc replicas
    profile_pids: dict[str, int] = field(default_factory=dict)
    profile_dir: Path | None = None


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def configure_fake(ctx: Context, chunks: int, interval_ms: float = 0, stamp: bool = False) -> None:
    httpx.post(
        f"{ctx.fake}/_fake/config",
        json={"chunks": chunks, "interval_ms": interval_ms, "stamp": stamp},
    ).raise_for_status()


def fake_stats(ctx: Context) -> dict[str, Any]:
    return httpx.get(f"{ctx.fake}/_fake/stats").json()


def _measured(ctx: Context, url: str, body: dict, token: str, seconds: float) -> dict[str, Any]:
    fake0 = cpu_seconds(ctx.fake_pid) or 0.0
    ctx.meter.start()
    result = run_wrk(ctx.wrk or "wrk", url, body, f"Bearer {token}", CONCURRENCY, seconds)
    reading = ctx.meter.stop()
    fake1 = cpu_seconds(ctx.fake_pid) or 0.0
    if result.errors:
        raise SystemExit(f"{result.errors} wrk errors against {url}")
    n = result.requests
    window = result.elapsed_s * (os.cpu_count() or 1)
    return {
        "requests": n,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "platform_ms": reading.total * 1000 / n,
        "per_process_ms": {k: v * 1000 / n for k, v in reading.per_group.items()},
        "fake_ms": (fake1 - fake0) * 1000 / n,
        "wrk_ms": result.cpu_s * 1000 / n,
        "wrk_share": result.cpu_s / window,
        "platform_share": reading.total / window,
    }


def _profile(ctx: Context, url: str, body: dict, token: str, label: str) -> None:
    """py-spy profiles of the gateway and text-svc under the same load, not measured."""
    assert ctx.profile_dir is not None
    spy = shutil.which("py-spy")
    command = [spy] if spy else [sys.executable, "-m", "py_spy"]
    if not spy:
        uv = shutil.which("uv") or str(ROOT / ".tools/bin/uv")
        command = [uv, "tool", "run", "py-spy"]
    ctx.profile_dir.mkdir(parents=True, exist_ok=True)
    seconds = 8
    spies = [
        subprocess.Popen(
            [
                *command,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--native",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(ctx.profile_dir / f"{label}-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in ctx.profile_pids.items()
    ]
    time.sleep(1)
    run_wrk(ctx.wrk or "wrk", url, body, f"Bearer {token}", CONCURRENCY, seconds)
    for spy_process in spies:
        spy_process.wait()


def cpu_section(ctx: Context) -> dict[str, Any]:
    """Platform CPU per request and per streamed chunk at concurrency 50 (wrk)."""
    if ctx.wrk is None:
        return {"skipped": "wrk is not installed and could not be installed (apt-get as root)"}
    seconds = max(2.0, 6 * ctx.scale)
    proxy = ctx.gateway + PROXY_PATH
    configure_fake(ctx, STREAM_CHUNKS)
    out: dict[str, Any] = {"seconds": seconds, "concurrency": CONCURRENCY}
    run_wrk(ctx.wrk, proxy, BODY, f"Bearer {ctx.member}", CONCURRENCY, 1)  # warm up
    out["direct"] = _measured(ctx, ctx.fake + "/v1/chat/completions", BODY, "sk-direct", seconds)
    for name, body, token in (
        ("member", BODY, ctx.member),
        ("byok", BODY, ctx.byok),
        ("member_stream", STREAM_BODY, ctx.member),
        ("byok_stream", STREAM_BODY, ctx.byok),
    ):
        print(f"  platform CPU: {name} ...", flush=True)  # noqa: T201
        out[name] = _measured(ctx, proxy, body, token, seconds)
    if ctx.profile_dir is not None:
        for label, body in (("member", BODY), ("member-stream", STREAM_BODY)):
            print(f"  py-spy: {label} ...", flush=True)  # noqa: T201
            _profile(ctx, proxy, body, ctx.member, label)
    return out


def _streams(job: StreamJob) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.streams"],
        input=json.dumps(asdict(job)),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def _job(ctx: Context, base: str, path: str, token: str, concurrency: int, **kw: Any) -> StreamJob:
    parts = urlsplit(base)
    return StreamJob(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 80,
        path=path,
        headers={"authorization": f"Bearer {token}"},
        body=STREAM_BODY,
        concurrency=concurrency,
        **kw,
    )


def _step(result: dict[str, Any]) -> dict[str, Any]:
    delays = result["delays_ms"]
    late = sum(1 for d in delays if d > LATE_MS)
    return {
        "streams": result["streams"],
        "failed_streams": result["failed_streams"],
        "lost_chunks": result["lost_chunks"],
        "late_chunks": late,
        "chunks": len(delays),
        "delay_p50_ms": pct(delays, 50),
        "delay_p99_ms": pct(delays, 99),
        "delay_max_ms": max(delays) if delays else float("nan"),
        "gap_p50_ms": pct(result["added_gaps_ms"], 50),
        "gap_p99_ms": pct(result["added_gaps_ms"], 99),
        "max_concurrent": result["max_concurrent"],
        "client_cpu_s": result["client_cpu_s"],
        "elapsed_s": result["elapsed_s"],
        "passed": not result["failed_streams"] and not late,
        "error_sample": result["error_sample"],
    }


def paced_section(ctx: Context) -> dict[str, Any]:
    """Streams paced like a model's: TTFC at c=1, gaps at 200, the most streams held."""
    out: dict[str, Any] = {"chunks": PACED_CHUNKS, "interval_ms": PACED_INTERVAL_MS}
    # Time to first chunk: short paced streams (2 chunks 20 ms apart), one at a time; only the
    # first chunk is timed, so a 64-chunk stream would add 1.3 s a sample and nothing else.
    configure_fake(ctx, 2, PACED_INTERVAL_MS, stamp=True)
    n = max(30, int(200 * ctx.scale))
    print("  paced: time to first chunk at c=1 ...", flush=True)  # noqa: T201
    direct = _streams(
        _job(ctx, ctx.fake, "/v1/chat/completions", "sk-direct", 1, chunks=2, streams_per_worker=n)
    )
    proxied = _streams(
        _job(ctx, ctx.gateway, PROXY_PATH, ctx.member, 1, chunks=2, streams_per_worker=n)
    )
    out["ttfc"] = {
        "n": n,
        "direct_p50_ms": pct(direct["ttfc_ms"], 50),
        "direct_p99_ms": pct(direct["ttfc_ms"], 99),
        "member_p50_ms": pct(proxied["ttfc_ms"], 50),
        "member_p99_ms": pct(proxied["ttfc_ms"], 99),
        "failed": proxied["failed_streams"] + direct["failed_streams"],
    }
    configure_fake(ctx, PACED_CHUNKS, PACED_INTERVAL_MS, stamp=True)
    stream_s = PACED_CHUNKS * PACED_INTERVAL_MS / 1000
    # Each worker runs two streams back to back, the workers' starts spread over one stream's
    # length: between the last start and the first worker's end, all N streams are open.
    print("  paced: direct at 200 streams (the harness's own gaps) ...", flush=True)  # noqa: T201
    out["direct_200"] = _step(
        _streams(
            _job(
                ctx,
                ctx.fake,
                "/v1/chat/completions",
                "sk-direct",
                200,
                chunks=PACED_CHUNKS,
                streams_per_worker=2,
                ramp_s=stream_s,
            )
        )
    )
    steps: dict[str, Any] = {}
    for n_streams in STEPS:
        print(f"  paced: {n_streams} concurrent streams ...", flush=True)  # noqa: T201
        fake0 = cpu_seconds(ctx.fake_pid) or 0.0
        ctx.meter.start()
        step = _step(
            _streams(
                _job(
                    ctx,
                    ctx.gateway,
                    PROXY_PATH,
                    ctx.member,
                    n_streams,
                    chunks=PACED_CHUNKS,
                    streams_per_worker=2,
                    ramp_s=stream_s,
                )
            )
        )
        reading = ctx.meter.stop()
        step["platform_cpu_s"] = reading.total
        step["fake_cpu_s"] = (cpu_seconds(ctx.fake_pid) or 0.0) - fake0
        steps[str(n_streams)] = step
        if not step["passed"]:
            break
    if "200" not in steps:
        print("  paced: 200 streams, for the gap figure ...", flush=True)  # noqa: T201
        steps["200"] = _step(
            _streams(
                _job(
                    ctx,
                    ctx.gateway,
                    PROXY_PATH,
                    ctx.member,
                    200,
                    chunks=PACED_CHUNKS,
                    streams_per_worker=2,
                    ramp_s=stream_s,
                )
            )
        )
        steps["200"]["after_failure"] = True
    out["steps"] = steps
    held = [int(k) for k, v in steps.items() if v["passed"] and not v.get("after_failure")]
    out["held"] = max(held) if held else 0
    return out


def replicas_section(ctx: Context) -> dict[str, Any]:
    """One, then two text-svc replicas behind one gateway; shares from the provider's counts."""
    if ctx.wrk is None:
        return {"skipped": "wrk is not installed and could not be installed (apt-get as root)"}
    seconds = max(3.0, 8 * ctx.scale)
    configure_fake(ctx, STREAM_CHUNKS)
    out: dict[str, Any] = {"seconds": seconds, "concurrency": CONCURRENCY}
    for name, gateway in (("one", ctx.gateway), ("two", ctx.pair_gateway)):
        url = gateway + PROXY_PATH
        run_wrk(ctx.wrk, url, BODY, f"Bearer {ctx.member}", CONCURRENCY, 1)  # warm up
        httpx.post(f"{ctx.fake}/_fake/reset").raise_for_status()
        result: WrkResult = run_wrk(
            ctx.wrk, url, BODY, f"Bearer {ctx.member}", CONCURRENCY, seconds
        )
        counts = fake_stats(ctx)["requests"]
        out[name] = {
            "rps": result.rps,
            "requests": result.requests,
            "errors": result.errors,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "per_replica": {k.strip("/"): v for k, v in sorted(counts.items())},
        }
    return out


# --- rendering ---------------------------------------------------------------------------------


def _ms(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f} ms"


def _mark(value: float, target: float) -> str:
    return "met" if value <= target else "**not met**"


def render_cpu(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["### Platform CPU per request", "", f"Skipped: {r['skipped']}.", ""]
    lines = [
        "### Platform CPU per request (issue 14, benchmark 1)",
        "",
        f"wrk (one thread, {r['concurrency']} connections, {r['seconds']:g} s a row) against the "
        "gateway; the CPU is the sum of utime + stime from `/proc` of every process of the path: "
        "gateway, text-svc, settings-svc, billing-svc, the Postgres processes serving the bench's "
        "database (postmaster, auxiliaries, its backends) and the Redis server "
        "(bench/meter.py). The fake provider (bench/fake_provider.py, raw asyncio) and wrk are "
        "excluded and reported on their own.",
        "",
        "| work | platform CPU / request | target | per chunk | req/s | p50 | p99 | "
        "gateway | text-svc | settings | billing | postgres | redis | fake provider | wrk | "
        "wrk's share of the machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    targets = {
        "member": ("member, non-stream", 1.2, None),
        "byok": ("BYOK, non-stream", 0.8, None),
        "member_stream": (f"member, {STREAM_CHUNKS}-chunk stream", 3.0, 0.1),
        "byok_stream": (f"BYOK, {STREAM_CHUNKS}-chunk stream", 3.0, 0.1),
    }
    d = r["direct"]
    lines.append(
        f"| direct to the fake provider | {NONE} | {NONE} | {NONE} | {d['rps']:.0f} | "
        f"{_ms(d['p50_ms'])} | {_ms(d['p99_ms'])} | "
        + " | ".join([NONE] * 6)
        + f" | {d['fake_ms']:.3f} | {d['wrk_ms']:.3f} | {d['wrk_share']:.0%} |"
    )
    for key, (label, target, chunk_target) in targets.items():
        x = r[key]
        p = x["per_process_ms"]
        per_chunk = NONE
        target_text = f"≤ {target} ms ({_mark(x['platform_ms'], target)})"
        if chunk_target is not None:
            chunk = x["platform_ms"] / STREAM_CHUNKS
            per_chunk = f"{chunk:.3f} ms (≤ {chunk_target}: {_mark(chunk, chunk_target)})"
        lines.append(
            f"| {label} | **{x['platform_ms']:.2f} ms** | {target_text} | {per_chunk} | "
            f"{x['rps']:.0f} | {_ms(x['p50_ms'])} | {_ms(x['p99_ms'])} | "
            + " | ".join(
                f"{p.get(k, 0):.3f}"
                for k in ("gateway", "text-svc", "settings-svc", "billing-svc", "postgres", "redis")
            )
            + f" | {x['fake_ms']:.3f} | {x['wrk_ms']:.3f} | {x['wrk_share']:.0%} |"
        )
    lines += [
        "",
        "Per-process columns are ms of CPU per request. The BYOK target (0.8 ms) applies to the "
        "non-stream row; the stream target (≤ 3 ms, ≤ 0.1 ms per chunk) was set for member "
        "streams, BYOK streams are shown for comparison. *wrk's share* is its CPU over the "
        "machine's capacity for the run (cores times seconds).",
        "",
    ]
    return lines


def render_paced(r: dict[str, Any]) -> list[str]:
    t = r["ttfc"]
    d200 = r["direct_200"]
    steps = r["steps"]
    s200 = steps.get("200", {})
    added_p50 = t["member_p50_ms"] - t["direct_p50_ms"]
    lines = [
        "### Paced streams (issue 14, benchmark 2)",
        "",
        f"The fake provider sends {r['chunks']} chunks {r['interval_ms']} ms apart, each stamped "
        "with the time it was written (CLOCK_MONOTONIC); bench/streams.py (raw asyncio, one "
        "HTTP/1.1 connection per stream) reads the stamps, so each chunk's delay from the "
        "provider's write to the client's read is measured directly. Member mode, one gateway and "
        "one text-svc.",
        "",
        f"- Added time to first chunk at c=1 (member, {t['n']} streams, against direct): p50 "
        f"**{_ms(added_p50)}** ({_ms(t['member_p50_ms'])} vs {_ms(t['direct_p50_ms'])}; target "
        f"≤ 2 ms: {_mark(added_p50, 2.0)}), p99 {_ms(t['member_p99_ms'] - t['direct_p99_ms'])} "
        f"({_ms(t['member_p99_ms'])} vs {_ms(t['direct_p99_ms'])}).",
    ]
    if s200:
        gap = s200["gap_p99_ms"]
        lines.append(
            f"- Added gap between chunks at 200 concurrent streams: p99 **{_ms(gap)}** (target "
            f"≤ 2 ms: {_mark(gap, 2.0)}); the harness alone (direct, 200 streams): p99 "
            f"{_ms(d200['gap_p99_ms'])}."
            + (
                " Measured after a smaller step had already failed."
                if s200.get("after_failure")
                else ""
            )
        )
    lines += [
        f"- Most concurrent streams held with no chunk lost or later than {LATE_MS} ms: "
        f"**{r['held']}** (target ≥ 200: {'met' if r['held'] >= 200 else '**not met**'}).",
        "",
        "| streams | passed | lost chunks | chunks > 50 ms | delay p50 | delay p99 | delay max | "
        "added gap p99 | platform CPU / chunk | client CPU | fake provider CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| direct, 200 | {'yes' if d200['passed'] else 'no'} | {d200['lost_chunks']} | "
        f"{d200['late_chunks']} | {_ms(d200['delay_p50_ms'])} | {_ms(d200['delay_p99_ms'])} | "
        f"{_ms(d200['delay_max_ms'])} | {_ms(d200['gap_p99_ms'])} | {NONE} | "
        f"{d200['client_cpu_s']:.2f} s | {NONE} |",
    ]
    for n, s in steps.items():
        chunk_cpu = (
            f"{s['platform_cpu_s'] * 1000 / max(1, s['chunks']):.3f} ms"
            if "platform_cpu_s" in s
            else NONE
        )
        fake = f"{s['fake_cpu_s']:.2f} s" if "fake_cpu_s" in s else NONE
        lines.append(
            f"| {n}{' (after the failure)' if s.get('after_failure') else ''} | "
            f"{'yes' if s['passed'] else '**no**'} | {s['lost_chunks']} | {s['late_chunks']} | "
            f"{_ms(s['delay_p50_ms'])} | {_ms(s['delay_p99_ms'])} | {_ms(s['delay_max_ms'])} | "
            f"{_ms(s['gap_p99_ms'])} | {chunk_cpu} | {s['client_cpu_s']:.2f} s | {fake} |"
        )
    lines += [
        "",
        "Each step: N workers, each running two streams back to back, starts spread over one "
        "stream's length (1.28 s), so all N streams are open together for about 1.3 s. The "
        "client's and the fake provider's CPU are for the whole step (about 4 s). Platform CPU "
        "per chunk is the whole stream's cost (hold, settlement included) over its chunks.",
        "",
    ]
    return lines


def render_replicas(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["### text-svc replicas", "", f"Skipped: {r['skipped']}.", ""]
    one, two = r["one"], r["two"]
    total = sum(two["per_replica"].values()) or 1
    shares = ", ".join(
        f"{name} {count:,} ({count / total:.0%})" for name, count in two["per_replica"].items()
    )
    within = (
        all(0.4 <= c / total <= 0.6 for c in two["per_replica"].values())
        and len(two["per_replica"]) == 2
    )
    return [
        "### One and two text-svc replicas behind one gateway (issue 13)",
        "",
        f"wrk, member mode, {r['concurrency']} connections, {r['seconds']:g} s each. The "
        "two-replica gateway's text target is the address list `ipv4:127.0.0.1:<a>,127.0.0.1:<b>` "
        "(round_robin, svc_common.grpc_client). Each replica is given its own provider base URL "
        "(`<fake>/t1/v1`, `<fake>/t2/v1`) and the fake provider counts requests per base URL: one "
        "upstream call per answered request, made by the replica that served it.",
        "",
        f"- One replica: {one['rps']:.0f} req/s (p50 {_ms(one['p50_ms'])}); two replicas: "
        f"{two['rps']:.0f} req/s (p50 {_ms(two['p50_ms'])}): "
        f"ratio **{two['rps'] / one['rps']:.2f}x** "
        "(on 2 shared cores this says little about speed).",
        f"- Requests per replica with two: {shares} — target each within 40-60 %: "
        f"{'met' if within else '**not met**'}.",
        "",
    ]
