"""Non-streamed (and whole-stream) load from `wrk`, a compiled load generator, so that the load
generator is not what limits or blurs the figures. Its own CPU time comes from the kernel's
accounting of the child (os.wait4), so its share of the machine is reported beside the figures.

wrk is Debian's `wrk` package: installed with apt-get when it is missing and we may (root), else
the caller skips the figures that need it and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("post.lua")


def ensure_wrk() -> str | None:
    """Path of wrk, installing the OS package when possible; None (and why, printed) if not."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get) ...", flush=True)  # noqa: T201
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        print("wrk is not installed and could not be (apt-get, as root): skipped", flush=True)  # noqa: T201
    return found


@dataclass
class WrkResult:
    requests: int
    errors: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    cpu_s: float  # wrk's own user + system time

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s


def run_wrk(
    wrk: str,
    url: str,
    body: dict,
    authorization: str,
    connections: int,
    duration_s: float,
    threads: int = 1,
) -> WrkResult:
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(body),
        "BENCH_AUTHORIZATION": authorization,
    }
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "30s",
        "-s",
        str(SCRIPT),
        url,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read().decode()
    err = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({process.returncode}): {err or out}")
    summary = json.loads(lines[-1])
    errors = sum(
        summary[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=summary["requests"],
        errors=errors,
        elapsed_s=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        cpu_s=usage.ru_utime + usage.ru_stime,
    )
