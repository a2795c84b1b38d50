"""CPU time of the whole platform from /proc: every service process the bench started, plus the
Postgres processes serving the bench's database and the Redis server it uses.

Postgres: the postmaster, its auxiliary processes (checkpointer, WAL writer, background
writer, launchers) and every backend connected to the bench's database, found through
pg_stat_activity; a backend that appears during a measurement counts all its CPU (it was born
in it). Redis: the server's `process_id` from INFO. When those servers are shared (the system
Postgres/Redis of BENCH_DATABASE_URL or TEST_DATABASE_URL), the auxiliary processes and Redis
also do other clients' work, which is counted: the bench's own embedded servers (the default)
serve nothing else.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import asyncpg
import redis

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None


async def _postgres_pids(database_url: str, database: str) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE (datname = $1 OR datname IS NULL)"
            " AND pid <> pg_backend_pid()",
            database,
        )
        own = await conn.fetchval("SELECT pg_backend_pid()")
        # While our backend lives: once the connection is closed it may be gone, and a
        # postmaster missed at the start and found at the end counted all its lifetime's CPU.
        postmaster = parent_pid(own)
    finally:
        await conn.close()
    pids = [r["pid"] for r in rows]
    if postmaster is not None and postmaster > 1:
        pids.append(postmaster)
    return pids


def redis_pid(redis_url: str) -> int | None:
    client = redis.Redis.from_url(redis_url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    return pid if os.path.exists(f"/proc/{pid}") else None


@dataclass
class Group:
    """A named set of processes whose CPU is summed."""

    name: str
    pids: list[int]


@dataclass
class Reading:
    per_group: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.per_group.values())


class Meter:
    """CPU seconds per group between start() and stop()."""

    def __init__(
        self, services: dict[str, list[int]], database_url: str, database: str, redis_url: str
    ) -> None:
        self.services = services
        self.database_url = database_url
        self.database = database
        self.redis_pid = redis_pid(redis_url)
        self.before: dict[int, float] = {}

    def groups(self) -> list[Group]:
        found = asyncio.run(_postgres_pids(self.database_url, self.database))
        # A server on another host or in a container has no /proc entries here: nothing counted.
        pg = [pid for pid in found if os.path.exists(f"/proc/{pid}")]
        out = [Group(name, pids) for name, pids in self.services.items()]
        out.append(Group("postgres", pg))
        out.append(Group("redis", [self.redis_pid] if self.redis_pid else []))
        return out

    def start(self) -> None:
        self.before = {}
        for group in self.groups():
            for pid in group.pids:
                value = cpu_seconds(pid)
                if value is not None:
                    self.before[pid] = value

    def stop(self) -> Reading:
        reading = Reading()
        for group in self.groups():
            total = 0.0
            for pid in group.pids:
                value = cpu_seconds(pid)
                if value is not None:
                    # A process first seen now was born during the measurement (a new backend):
                    # all its CPU is the measurement's.
                    total += value - self.before.get(pid, 0.0)
            reading.per_group[group.name] = total
        return reading
