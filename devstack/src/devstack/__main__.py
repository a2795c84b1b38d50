"""`make run`: the whole platform on this machine.

Postgres and Redis come from DATABASE_URL / REDIS_URL when set, else embedded servers under
.devstack/. Providers are the real ones when their keys are set (OPENAI_API_KEY,
ANTHROPIC_API_KEY), else the offline demo provider (the provider stand-ins, which answer any key).
Each service runs as its own process, as in production; one that crashes is started again (see
devstack.supervisor).

Replicas: `make run REPLICAS=2` runs two processes of every gRPC service (settings-, billing-,
text-svc); `TEXT_SVC_REPLICAS`, `SETTINGS_SVC_REPLICAS`, `BILLING_SVC_REPLICAS` set one service's
count. The callers reach all replicas of a service through one gRPC target, the address list
`ipv4:127.0.0.1:<port1>,127.0.0.1:<port2>`, over which their channels balance; billing-svc
replicas share the usage consumer group under their own consumer names. Every replica serves its
metrics on a port of its own (`<PREFIX>METRICS_PORT` in its environment).

The embedded Redis keeps its data in an append-only file, fsynced on every write, so usage
events published but not yet applied survive a crash or a restart of the stack.
Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, stack_redis
from devstack.secrets import STATE_DIR, dev_secrets
from devstack.supervisor import Supervisor
from devstack.token import mint

STARTING_BALANCE_MICROS = 10_000_000  # 10 credits for every new dev user


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replicas(prefix: str) -> int:
    """How many processes of a service to run: `<PREFIX>_REPLICAS` (e.g. TEXT_SVC_REPLICAS=3),
    else REPLICAS (every gRPC service), else 1."""
    for name in (f"{prefix}_REPLICAS", "REPLICAS"):
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or not 1 <= int(value) <= 16:
                raise SystemExit(f"{name} must be a whole number from 1 to 16, not {value!r}")
            return int(value)
    return 1


def replica_names(service: str, ports: list[int]) -> list[tuple[str, int]]:
    """Each replica's name in logs and the supervisor ("text-svc-2"); a lone one keeps the
    service's name."""
    if len(ports) == 1:
        return [(service, ports[0])]
    return [(f"{service}-{n}", port) for n, port in enumerate(ports, start=1)]


def grpc_target(ports: list[int]) -> str:
    """One gRPC target for every replica: a fixed address list, which the callers' channels
    balance over (svc_common.grpc_client, round_robin) as they would over a DNS name's
    addresses in Kubernetes."""
    if len(ports) == 1:
        return f"127.0.0.1:{ports[0]}"
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)


def instance_env(name: str) -> dict[str, str]:
    """Names the replica in its telemetry (`service.instance.id`), so that traces and metrics
    tell the replicas of one service apart."""
    attributes = [a for a in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if a]
    return {"OTEL_RESOURCE_ATTRIBUTES": ",".join([*attributes, f"service.instance.id={name}"])}


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived: stop the stack."""


class Stack:
    def __init__(self, logs: Path = STATE_DIR / "logs") -> None:
        self.supervisor = Supervisor(logs)
        self.embedded: list[EmbeddedPostgres | EmbeddedRedis] = []
        self.logs = logs
        self.stop_requested = False

    def spawn(self, name: str, module: str, env: dict[str, str], *args: str) -> None:
        self.supervisor.spawn(name, module, env, *args)

    def watch(self) -> None:
        """Restart crashed services; StopRequested once a stop signal has arrived."""
        if self.stop_requested:
            raise StopRequested
        self.supervisor.supervise()

    def stop(self) -> None:
        self.supervisor.stop()
        for server in reversed(self.embedded):
            server.stop()


def wait_ready(stack: Stack, url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.watch()
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the stack did not become ready at {url}; logs in {stack.logs}")


def main() -> None:
    # The supervisor's lines only (not every readiness probe the HTTP client makes).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("devstack: %(message)s"))
    logging.getLogger("devstack").addHandler(handler)
    logging.getLogger("devstack").setLevel(logging.INFO)
    stack = Stack()

    # From the first moment, so that a stop during start-up still stops what was started.
    def on_signal(*_: object) -> None:
        stack.stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    secrets_ = dev_secrets()
    try:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            pg = EmbeddedPostgres(STATE_DIR / "postgres")
            stack.embedded.append(pg)
            database_url = pg.url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis = stack_redis(STATE_DIR)
            stack.embedded.append(redis)
            redis_url = redis.url

        providers: dict[str, str] = {}
        image_providers: dict[str, str] = {}
        openai_key = os.environ.get("OPENAI_API_KEY", "")
        anthropic_key = os.environ.get("ANTHROPIC_API_KEY", "")
        demo = not (openai_key or anthropic_key)
        if demo:
            ports = {p: free_port() for p in ("openai", "anthropic", "ollama")}
            for provider, port in ports.items():
                stack.spawn(
                    f"demo-{provider}",
                    "provider_stand_ins",
                    {},
                    "--provider",
                    provider,
                    "--port",
                    str(port),
                    "--accept-any-key",
                )
            providers = {
                "TEXT_SVC_OPENAI_BASE_URL": f"http://127.0.0.1:{ports['openai']}/v1",
                "TEXT_SVC_OPENAI_API_KEY": "sk-demo-platform-key",
                "TEXT_SVC_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{ports['anthropic']}",
                "TEXT_SVC_ANTHROPIC_API_KEY": "sk-ant-demo-platform-key",
                "TEXT_SVC_OLLAMA_BASE_URL": f"http://127.0.0.1:{ports['ollama']}",
            }
            # The image stand-ins take time per step (0.1 s), so progress and previews show.
            stand_in_ports = {p: free_port() for p in ("stability", "automatic1111", "comfyui")}
            for provider, port in stand_in_ports.items():
                stack.spawn(
                    f"demo-{provider}",
                    "provider_stand_ins",
                    {},
                    "--provider",
                    provider,
                    "--port",
                    str(port),
                    "--accept-any-key",
                    "--step-delay-s",
                    "0.1",
                )
            # The OpenAI stand-in serves images too.
            image_providers = {
                "IMAGE_SVC_OPENAI_BASE_URL": f"http://127.0.0.1:{ports['openai']}/v1",
                "IMAGE_SVC_OPENAI_API_KEY": "sk-demo-platform-key",
                "IMAGE_SVC_STABILITY_BASE_URL": f"http://127.0.0.1:{stand_in_ports['stability']}",
                "IMAGE_SVC_STABILITY_API_KEY": "sk-demo-platform-key",
                "IMAGE_SVC_AUTOMATIC1111_BASE_URL": (
                    f"http://127.0.0.1:{stand_in_ports['automatic1111']}"
                ),
                "IMAGE_SVC_COMFYUI_BASE_URL": f"http://127.0.0.1:{stand_in_ports['comfyui']}",
            }
        else:
            providers = {
                "TEXT_SVC_OPENAI_API_KEY": openai_key,
                "TEXT_SVC_ANTHROPIC_API_KEY": anthropic_key,
            }
            image_providers = {"IMAGE_SVC_OPENAI_API_KEY": openai_key}

        common = {
            "ENVIRONMENT": "development",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "SERVICE_TOKEN_SECRET": secrets_["service_token_secret"],
        }

        def service_env(prefix: str, service: str, **values: str) -> dict[str, str]:
            from svc_common.auth import mint_service_token

            env = {f"{prefix}{k}": v for k, v in common.items()}
            env[f"{prefix}SERVICE_TOKEN"] = mint_service_token(
                secrets_["service_token_secret"], service
            )
            env.update({f"{prefix}{k.upper()}": v for k, v in values.items()})
            # Each replica its own metrics port (Prometheus text at /metrics), found in its
            # environment; the log says which at start ("<service> metrics on port N").
            env.setdefault(f"{prefix}METRICS_PORT", str(free_port()))
            return env

        write_stack_env(database_url, redis_url, secrets_["encryption_key"])
        settings_ports = [free_port() for _ in range(replicas("SETTINGS_SVC"))]
        billing_ports = [free_port() for _ in range(replicas("BILLING_SVC"))]
        text_ports = [free_port() for _ in range(replicas("TEXT_SVC"))]
        settings_target = grpc_target(settings_ports)
        billing_target = grpc_target(billing_ports)
        text_target = grpc_target(text_ports)
        multimodal_ports = [free_port() for _ in range(replicas("MULTIMODAL_SVC"))]
        multimodal_target = grpc_target(multimodal_ports)
        image_ports = [free_port() for _ in range(replicas("IMAGE_SVC"))]
        image_target = grpc_target(image_ports)
        for name, port in replica_names("settings-svc", settings_ports):
            stack.spawn(
                name,
                "settings_svc",
                service_env(
                    "SETTINGS_SVC_",
                    "settings-svc",
                    listen=f"127.0.0.1:{port}",
                    database_url=database_url,
                    redis_url=redis_url,
                    encryption_keys=secrets_["encryption_key"],
                )
                | instance_env(name),
            )
        for name, port in replica_names("billing-svc", billing_ports):
            stack.spawn(
                name,
                "billing_svc",
                service_env(
                    "BILLING_SVC_",
                    "billing-svc",
                    listen=f"127.0.0.1:{port}",
                    database_url=database_url,
                    redis_url=redis_url,
                    starting_balance_micros=str(STARTING_BALANCE_MICROS),
                    # Every replica joins the one consumer group under its own name, the same
                    # across restarts: a restarted replica re-reads the entries it had read but
                    # not acknowledged at once, instead of waiting claim_idle_ms for XAUTOCLAIM.
                    consumer_name=f"devstack-{name}",
                )
                | instance_env(name),
            )
        for name, port in replica_names("text-svc", text_ports):
            stack.spawn(
                name,
                "text_svc",
                {
                    **service_env(
                        "TEXT_SVC_",
                        "text-svc",
                        listen=f"127.0.0.1:{port}",
                        settings_target=settings_target,
                        billing_target=billing_target,
                        redis_url=redis_url,
                    ),
                    **providers,
                    **instance_env(name),
                },
            )
        # The same providers (the demo stand-ins see images too), under multimodal-svc's prefix.
        vision_providers = {
            k.replace("TEXT_SVC_", "MULTIMODAL_SVC_", 1): v for k, v in providers.items()
        }
        for name, port in replica_names("multimodal-svc", multimodal_ports):
            stack.spawn(
                name,
                "multimodal_svc",
                {
                    **service_env(
                        "MULTIMODAL_SVC_",
                        "multimodal-svc",
                        listen=f"127.0.0.1:{port}",
                        settings_target=settings_target,
                        billing_target=billing_target,
                        redis_url=redis_url,
                    ),
                    **vision_providers,
                    **instance_env(name),
                },
            )
        # Signed image URLs: a secret of their own, derived so that it survives restarts.
        image_url_secret = hashlib.sha256(
            b"image-url:" + secrets_["service_token_secret"].encode()
        ).hexdigest()
        for name, port in replica_names("image-svc", image_ports):
            stack.spawn(
                name,
                "image_svc",
                {
                    **service_env(
                        "IMAGE_SVC_",
                        "image-svc",
                        listen=f"127.0.0.1:{port}",
                        settings_target=settings_target,
                        billing_target=billing_target,
                        redis_url=redis_url,
                        image_url_secret=image_url_secret,
                    ),
                    **image_providers,
                    **instance_env(name),
                },
            )
        host = os.environ.get("GATEWAY_HOST", "127.0.0.1")
        gateway_port = os.environ.get("GATEWAY_PORT", "8080")
        stack.spawn(
            "gateway",
            "gateway",
            {
                "GATEWAY_HOST": host,
                "GATEWAY_PORT": gateway_port,
                "GATEWAY_ENVIRONMENT": "development",
                "GATEWAY_JWT_HS256_SECRET": secrets_["jwt_hs256_secret"],
                "GATEWAY_TEXT_TARGET": text_target,
                "GATEWAY_MULTIMODAL_TARGET": multimodal_target,
                "GATEWAY_IMAGE_TARGET": image_target,
                "GATEWAY_SETTINGS_TARGET": settings_target,
                "GATEWAY_BILLING_TARGET": billing_target,
                "GATEWAY_SERVICE_TOKEN": _gateway_token(secrets_["service_token_secret"]),
                # The console make run serves: its own origin may call the API from a browser.
                "GATEWAY_CORS_ALLOWED_ORIGINS": json.dumps([f"http://{host}:{gateway_port}"]),
                **instance_env("gateway"),
            },
        )
        base = f"http://{host}:{gateway_port}"
        wait_ready(stack, f"{base}/readyz")
        token = mint(os.environ.get("USER_NAME", "alice"))
        replica_counts = (
            f"settings-svc {len(settings_ports)}, billing-svc {len(billing_ports)},"
            f" text-svc {len(text_ports)}, multimodal-svc {len(multimodal_ports)},"
            f" image-svc {len(image_ports)}"
        )
        print(  # noqa: T201 - this is the command's output
            f"""
The platform is up ({"offline demo provider" if demo else "real providers"}; logs in {stack.logs}).

  gateway      {base}   (API docs: {base}/docs)
  console      {base}/#token={token}   (signs alice in; the token stays in the URL fragment)
  replicas     {replica_counts}   (make run REPLICAS=2)
  dev token    alice, a member with {STARTING_BALANCE_MICROS // 1_000_000} credits (below);
               `make token USER=bob` for another user

  from openai import OpenAI
  client = OpenAI(base_url="{base}/api/text-proxy/v1", api_key="<dev token>")
  client.chat.completions.create(
      model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hello"}}]
  )

A service that crashes is started again; Ctrl-C stops everything. The dev token for alice:
{token}""",
            flush=True,
        )
        while True:
            stack.watch()
            time.sleep(0.2)
    except StopRequested:
        pass
    finally:
        stack.stop()


def write_stack_env(database_url: str, redis_url: str, encryption_key: str) -> None:
    """What `make grant`, `make migrate` and `make rotate-keys` need to reach this stack."""
    values = {
        "SETTINGS_SVC_DATABASE_URL": database_url,
        "SETTINGS_SVC_REDIS_URL": redis_url,
        "SETTINGS_SVC_ENCRYPTION_KEYS": encryption_key,
        "BILLING_SVC_DATABASE_URL": database_url,
        "BILLING_SVC_REDIS_URL": redis_url,
        # A grant that opens an account gives the same welcome credits the service would.
        "BILLING_SVC_STARTING_BALANCE_MICROS": str(STARTING_BALANCE_MICROS),
    }
    path = STATE_DIR / "stack.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))


def _gateway_token(secret: str) -> str:
    from svc_common.auth import mint_service_token

    return mint_service_token(secret, "gateway")


if __name__ == "__main__":
    main()
