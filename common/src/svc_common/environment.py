"""Settings every service shares; each service subclasses ServiceSettings with its env prefix.

`refuse_public_secrets` is the one check, used by every service, that no secret is empty or a
value anyone can read (a published default) outside development.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from svc_common.addresses import normalise_hosts
from svc_common.settings_changes import CHANNEL
from svc_common.usage_events import STREAM

# Secret values that have been published (as defaults in this repository's compose file, docs or
# examples, or as the usual placeholders): a deployment that uses one lets anyone mint service
# tokens or user JWTs. Compared case-insensitively.
KNOWN_PUBLIC_SECRETS = frozenset(
    {
        "change-me-service-token-secret",
        "change-me",
        "changeme",
        "change_me",
        "secret",
        "password",
        "default",
        "development",
        "dev",
        "test",
    }
)
# Public key material: settings-svc's fixed development encryption key (see its keystore).
_PUBLIC_KEY_BYTES = frozenset(
    {hashlib.sha256(b"settings-svc development key: never use outside development").digest()}
)


def _is_public_service_token(token: str) -> bool:
    """A token minted from a published secret: anyone can mint the same one."""
    from svc_common.auth import mint_service_token

    service = token.partition(".")[0]
    return any(mint_service_token(s, service) == token for s in KNOWN_PUBLIC_SECRETS)


def _has_public_key(spec: str) -> bool:
    """`keyid:base64,...` (settings-svc's encryption keys) naming a published key."""
    for entry in spec.split(","):
        encoded = entry.partition(":")[2].strip()
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue  # malformed: the keystore says what is wrong with it
        if key in _PUBLIC_KEY_BYTES:
            return True
    return False


def public_secret_problem(kind: str, value: str) -> str | None:
    """Why this secret value must not be used outside development; None when it may.

    `kind` is "secret", "service_token" or "encryption_keys". The answer never quotes the value.
    """
    stripped = value.strip()
    if not stripped:
        return "is empty"
    if stripped.lower() in KNOWN_PUBLIC_SECRETS:
        return "is a published default"
    if kind == "service_token" and _is_public_service_token(stripped):
        return "was minted from a published default secret"
    if kind == "encryption_keys" and _has_public_key(stripped):
        return "lists the public development key"
    return None


def refuse_public_secrets(
    environment: str, secrets: Mapping[str, tuple[str, SecretStr | None]]
) -> None:
    """Raise ValueError when a configured secret is empty or public, unless in development.

    `secrets` maps each environment variable's name to (kind, value); unset values (None) are
    left to the code that needs them (it says that they are required).
    """
    if environment == "development":
        return
    problems = []
    for name, (kind, secret) in secrets.items():
        if secret is None:
            continue
        problem = public_secret_problem(kind, secret.get_secret_value())
        if problem is not None:
            problems.append(f"{name} {problem}")
    if problems:
        raise ValueError(
            "; ".join(problems)
            + " (outside development every secret must be your own: generate one with "
            "`openssl rand -base64 32`; see docs/configuration.md)"
        )


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return [str(item).strip() for item in value if str(item).strip()]
    return value


def _split_hosts(value: Any) -> Any:
    value = _split_commas(value)
    return normalise_hosts(value) if isinstance(value, list) else value


# A setting written "a,b,c" in the environment (NoDecode: not parsed as JSON), blanks dropped.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
# A comma-separated allow-list of hosts, each as URLs compare it (`addresses.normalise_host`).
HostList = Annotated[list[str], NoDecode, BeforeValidator(_split_hosts)]


class ProcessSettings(BaseSettings):
    """Base of every process's environment settings, the gateway's and the services': the
    deployment environment, the log level, and the refusal of public secrets. Subclasses set
    `env_prefix` and list their secrets in `named_secrets`."""

    # hide_input_in_errors: a refused setting must not print the environment's secrets.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    # development relaxes what must be configured (e.g. settings-svc's encryption key, secrets
    # that are published defaults); never use it in production.
    environment: Literal["development", "test", "production"] = "production"
    log_level: str = "INFO"

    def named_secrets(self) -> dict[str, tuple[str, SecretStr | None]]:
        """This process's secrets by environment variable name, for refuse_public_secrets."""
        return {}

    @model_validator(mode="after")
    def _refuse_public_secrets(self) -> Self:
        refuse_public_secrets(self.environment, self.named_secrets())
        return self


class ServiceSettings(ProcessSettings):
    """Base for each gRPC service's Settings. Subclasses set `env_prefix` (e.g. "TEXT_SVC_")."""

    # host:port to listen on; port 0 picks a free port (tests).
    listen: str = "127.0.0.1:0"
    # Verifies service tokens presented by callers (see svc_common.auth). Required to accept calls.
    service_token_secret: SecretStr | None = None
    # This service's own token, sent on calls to other services.
    service_token: SecretStr | None = None
    # SIGTERM: the calls in flight (and background work) get this long to finish.
    grace_seconds: float = 10.0
    # The Prometheus metrics port (<PREFIX>METRICS_PORT), on the host of `listen`; unset: no
    # metrics port; 0 picks a free port (tests). See svc_common.metrics.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    def named_secrets(self) -> dict[str, tuple[str, SecretStr | None]]:
        """Subclasses with more secrets extend it."""
        prefix = self.model_config.get("env_prefix", "")
        return {
            f"{prefix}SERVICE_TOKEN_SECRET": ("secret", self.service_token_secret),
            f"{prefix}SERVICE_TOKEN": ("service_token", self.service_token),
        }


class DataServiceSettings(ServiceSettings):
    """Base of a service that owns a Postgres schema (settings-svc, billing-svc): its database,
    its connection pool's bounds (one pair of names in every such service) and when its
    migrations run."""

    # SecretStr: a URL may carry a password. The default is the local development server.
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    # Connections opened at start and the most ever open; a subclass may change the defaults.
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    # Apply migrations when the server starts (make run, tests). Off where a migration job runs
    # first (deploy/k8s: `python -m <service> migrate`), so replicas never race a schema change.
    migrate_on_start: bool = True

    @model_validator(mode="after")
    def _refuse_renamed_pool_size(self) -> Self:
        # <PREFIX>DB_POOL_SIZE was billing-svc's name for the maximum: refused rather than
        # silently ignored (extra="ignore"): a deployment that still sets it is told the new name.
        prefix = str(self.model_config.get("env_prefix", ""))
        if f"{prefix}DB_POOL_SIZE" in os.environ:
            raise ValueError(
                f"{prefix}DB_POOL_SIZE is now {prefix}DB_POOL_MAX_SIZE "
                f"(and {prefix}DB_POOL_MIN_SIZE, default 1)"
            )
        return self


class ModelServiceSettings(ServiceSettings):
    """Base of a model service's Settings: how it reaches settings-svc, billing-svc and Redis,
    its operator defaults, and the operator's providers (`<provider>_base_url` and
    `<provider>_api_key` fields of the subclass, for the names in `KNOWN_PROVIDERS`). Timeouts
    and retries toward providers stay in the subclass: each service has its own defaults."""

    # Providers whose base URL and platform key the operator configures, by provider name.
    KNOWN_PROVIDERS: ClassVar[tuple[str, ...]] = ()

    # Hosts a user's base URL may name although they resolve to loopback/private addresses: the
    # same list as SETTINGS_SVC_ALLOWED_BASE_URL_HOSTS, enforced again at every connection (a
    # host taken off the list stops working at once for saved configs too).
    allowed_base_url_hosts: HostList = Field(default_factory=list)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    # A retry-after longer than this is not waited for: the caller gets the 429 with the hint.
    max_retry_wait_s: float = Field(default=10.0, ge=0)

    # The config every caller gets when settings-svc is not configured (settings_target empty).
    default_provider: str = "openai"

    # settings-svc address (host:port); empty: every caller gets the operator defaults.
    settings_target: str = ""
    # billing-svc address; empty: member mode runs without credit holds (development only).
    billing_target: str = ""
    # Redis for usage events and settings-change messages; empty: no usage events are published.
    # SecretStr: a URL may carry a password (as the database URLs).
    redis_url: SecretStr | None = None
    usage_stream: str = STREAM
    # After a request's usage event is queued, wait this long for others before sending: one
    # pipelined round trip then carries many events under load. The event reaches billing at
    # most this much later; nobody waits on it (the hold or lease was taken before the call).
    usage_publish_linger_s: float = Field(default=0.005, ge=0, le=1.0)
    settings_changed_channel: str = CHANNEL
    config_cache_ttl_s: float = Field(default=30.0, ge=0)
    # Deadline for calls to settings-svc and billing-svc.
    internal_call_timeout_s: float = Field(default=5.0, gt=0)
    # Member requests debit a credit lease (svc_common.leases) set aside once in billing-svc
    # instead of a Reserve each. Off here: a service turns it on where its usage events name
    # the lease (text-svc).
    credit_lease: bool = False
    # A lease no request took from for this long is closed, its unspent rest returned.
    lease_idle_s: float = Field(default=5.0, gt=0)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _no_redis_when_empty(cls, value: Any) -> Any:
        return None if value == "" else value

    def operator_base_url(self, provider: str) -> str:
        """The operator's base URL for a provider; empty when the operator configured none."""
        if provider not in self.KNOWN_PROVIDERS:
            return ""
        return str(getattr(self, f"{provider}_base_url", ""))

    def platform_key(self, provider: str) -> str:
        """The platform's key for a provider (member mode); empty when there is none."""
        if provider not in self.KNOWN_PROVIDERS:
            return ""
        secret: SecretStr | None = getattr(self, f"{provider}_api_key", None)
        return secret.get_secret_value() if secret is not None else ""
