"""`make run REPLICAS=2`: two processes of every gRPC service share the work, and killing a
replica of text-svc and of billing-svc with SIGKILL in the middle of a burst changes no sum.

The stack keeps its supervisor on: the killed replicas are started again on their ports (as a
Deployment replaces a pod), and the surviving replica of each took the calls meanwhile.

Which replica served a call is read from what each replica exports itself: the
`grpc_server_handled_total` counters on its own metrics port (health checks are not counted).
A killed replica's counters die with it, so each replica is read just before the kill and again
at the end (a restarted replica counts from zero on the same port).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import openai
import psutil
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually

from devstack.testing import DevStack

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "count for me"}]
USERS = [f"replica-user-{n}" for n in range(6)]
REQUESTS, CONCURRENCY, KILL_AFTER = 60, 8, 20
HOLD_TTL_S = 6
# Credit leases (text-svc's default) are used for this long and swept HOLD_TTL_S later when
# their holder died; the survivors close theirs after LEASE_IDLE_S without a request.
LEASE_USE_S, LEASE_IDLE_S = 3, 1
MODULES = {
    "text_svc": "text.v1.TextService",
    "billing_svc": "billing.v1.BillingService",
    "settings_svc": "settings.v1.SettingsService",
}


async def calls_served(port: int) -> Counter[str]:
    """The calls one replica has handled, by gRPC service, from its metrics port."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    served: Counter[str] = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "grpc_server_handled_total":
                served[sample.labels["grpc_service"]] += int(sample.value)
    return served


class Served:
    """Calls served per (replica, gRPC service), summed over the replicas' lifetimes."""

    def __init__(self, stack: DevStack) -> None:
        self.ports = {
            module: stack.metrics_ports(module) for module in MODULES
        }  # replica name -> port
        self.before_kill: Counter[tuple[str, str]] = Counter()
        self.totals: Counter[tuple[str, str]] = Counter()

    async def read_before_kill(self, module: str, replica: str) -> None:
        served = await calls_served(self.ports[module][replica])
        self.before_kill[(replica, MODULES[module])] = served[MODULES[module]]

    async def read_all(self) -> None:
        for module, ports in self.ports.items():
            for replica, port in ports.items():

                async def answers(port: int = port) -> bool:
                    try:
                        await calls_served(port)
                    except httpx.HTTPError:
                        return False
                    return True

                # A restarted replica answers once it is up again.
                await eventually(answers, within_s=20, what=f"{replica}'s metrics port")
                served = await calls_served(port)
                key = (replica, MODULES[module])
                self.totals[key] = self.before_kill[key] + served[MODULES[module]]

    def of(self, service: str) -> dict[str, int]:
        return {r: n for (r, s), n in self.totals.items() if s == service}


async def _fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _demo_port(stack: DevStack, provider: str) -> int:
    assert stack.process is not None
    for child in psutil.Process(stack.process.pid).children():
        args = child.cmdline()
        if args[1:3] == ["-m", "provider_stand_ins"] and provider in args:
            return int(args[args.index("--port") + 1])
    raise AssertionError(f"no demo {provider} stand-in")


@pytest.mark.timeout(90)
async def test_two_replicas_of_each_service_share_the_load_and_a_sigkill_changes_no_sum(
    make_run: DevStack,
) -> None:
    make_run.start(
        REPLICAS="2",
        # Holds of requests cut by a kill, and the killed text-svc's credit leases, expire (and
        # are swept) within seconds, not minutes.
        BILLING_SVC_HOLD_TTL_S=str(HOLD_TTL_S),
        BILLING_SVC_LEASE_USE_S=str(LEASE_USE_S),
        BILLING_SVC_SWEEP_INTERVAL_S="1",
        TEXT_SVC_LEASE_IDLE_S=str(LEASE_IDLE_S),
    )
    await make_run.wait_ready()
    text_pids = make_run.replica_pids("text_svc")
    billing_pids = make_run.replica_pids("billing_svc")
    assert set(text_pids) == {"text-svc-1", "text-svc-2"}, text_pids
    assert set(billing_pids) == {"billing-svc-1", "billing-svc-2"}, billing_pids
    assert set(make_run.replica_pids("settings_svc")) == {"settings-svc-1", "settings-svc-2"}
    served = Served(make_run)
    assert all(len(ports) == 2 for ports in served.ports.values()), served.ports

    # Answers take half a second, so requests hold credits and are in flight at the kill.
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{_demo_port(make_run, 'openai')}/_stand_in/behaviour",
            json={"first_byte_delay_s": 0.5},
        )
        assert response.status_code == 200, response.text

    clients = {
        user: openai.AsyncOpenAI(
            base_url=f"{make_run.gateway_url}/api/text-proxy/v1",
            api_key=make_run.token(user),
            max_retries=0,  # one request, one answer or one error: the counts below are exact
            timeout=30.0,
        )
        for user in USERS
    }
    answered: dict[str, str] = {}  # completion id -> user
    failures: list[str] = []
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one_request(n: int) -> None:
        user = USERS[n % len(USERS)]
        async with slots:
            try:
                completion = await clients[user].chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=16
                )
            except openai.APIError as error:
                failures.append(f"{type(error).__name__}: {error}")
                return
            answered[completion.id.removeprefix("chatcmpl-")] = user
            if len(answered) == KILL_AFTER:
                await served.read_before_kill("text_svc", "text-svc-1")
                await served.read_before_kill("billing_svc", "billing-svc-1")
                make_run.kill_replica("text-svc-1", text_pids["text-svc-1"])
                make_run.kill_replica("billing-svc-1", billing_pids["billing-svc-1"])

    await asyncio.gather(*(one_request(n) for n in range(REQUESTS)))
    for client in clients.values():
        await client.close()
    assert len(answered) > KILL_AFTER + len(failures), failures

    # Settled: every answer charged, and no hold or lease open (holds of cut requests and the
    # killed text-svc's leases swept at expiry, the survivors' leases closed when idle).
    async def settled() -> bool:
        rows = await _fetch(
            make_run.database_url,
            "SELECT (SELECT count(*) FROM billing.holds WHERE user_id = ANY($1)"
            "        AND status = 'open') AS open_holds,"
            "       (SELECT count(*) FROM billing.leases WHERE user_id = ANY($1)"
            "        AND status IN ('open', 'closing')) AS open_leases,"
            "       (SELECT count(*) FROM billing.ledger WHERE event_id = ANY($2)"
            "        AND kind = 'charge') AS charged",
            USERS,
            list(answered),
        )
        return bool(
            rows[0]["open_holds"] == 0
            and rows[0]["open_leases"] == 0
            and rows[0]["charged"] == len(answered)
        )

    await eventually(
        settled,
        within_s=LEASE_USE_S + HOLD_TTL_S + 25,
        what="every answer charged, holds and leases closed",
    )

    charges = await _fetch(
        make_run.database_url,
        "SELECT event_id, user_id, cost_micros, shortfall_micros FROM billing.ledger"
        " WHERE user_id = ANY($1) AND kind = 'charge' AND cost_micros > 0",
        USERS,
    )
    charged = Counter(row["event_id"] for row in charges)
    # Every answered request charged exactly once, to its user, for a real cost.
    assert all(charged[event_id] == 1 for event_id in answered), "an answer charged != once"
    assert all(row["user_id"] == answered.get(row["event_id"], row["user_id"]) for row in charges)
    assert all(row["shortfall_micros"] == 0 for row in charges)
    # Anything else charged is a request cut by the kill after its provider call: never more
    # of those than failed requests.
    assert len(charged) - len(answered) <= len(failures), (len(charged), len(answered), failures)

    # Balances: every account holds exactly its grants minus its charges (ledger sums).
    sums = await _fetch(
        make_run.database_url,
        "SELECT a.user_id, a.available_micros,"
        "       (SELECT coalesce(sum(amount_micros), 0) FROM billing.ledger l"
        "        WHERE l.user_id = a.user_id AND kind = 'grant') AS granted,"
        "       (SELECT coalesce(sum(amount_micros), 0) FROM billing.ledger l"
        "        WHERE l.user_id = a.user_id AND kind = 'charge') AS charged,"
        "       (SELECT coalesce(sum(amount_micros), 0) FROM billing.ledger l"
        "        WHERE l.user_id = a.user_id) AS ledger_sum"
        " FROM billing.accounts a WHERE a.user_id = ANY($1)",
        USERS,
    )
    assert {row["user_id"] for row in sums} == set(USERS)
    # The requests spent credit leases (text-svc's default), all of them closed or swept now.
    [leased] = await _fetch(
        make_run.database_url,
        "SELECT count(*) AS n FROM billing.leases WHERE user_id = ANY($1)",
        USERS,
    )
    assert leased["n"] > 0
    for row in sums:
        assert row["granted"] > 0 and row["charged"] < 0, dict(row)
        assert row["available_micros"] == row["granted"] + row["charged"], dict(row)
        assert row["available_micros"] == row["ledger_sum"], dict(row)

    assert "text-svc-1 killed by SIGKILL; restarting it" in make_run.log()
    assert "billing-svc-1 killed by SIGKILL; restarting it" in make_run.log()

    # Each replica served a share, as its own metrics port tells (the killed replicas: what they
    # had served before the kill, plus what they served once restarted).
    await served.read_all()
    assert make_run.stop() == 0
    text = served.of("text.v1.TextService")
    billing = served.of("billing.v1.BillingService")
    settings = served.of("settings.v1.SettingsService")
    assert sum(text.values()) >= len(answered) - KILL_AFTER, text
    # The killed replicas served before the kill; each survivor its half before the kill and
    # everything while its peer was down.
    assert text.get("text-svc-1", 0) > 0 and text.get("text-svc-2", 0) >= 0.4 * sum(text.values())
    assert billing.get("billing-svc-1", 0) > 0, billing
    assert billing.get("billing-svc-2", 0) >= 0.4 * sum(billing.values()), billing
    # Both settings-svc replicas lived throughout (config lookups, cached per user by text-svc).
    assert min(settings.get("settings-svc-1", 0), settings.get("settings-svc-2", 0)) >= 0.2 * sum(
        settings.values()
    ), settings
