"""The gateway's settings, from GATEWAY_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from svc_common.environment import ProcessSettings

MIB = 1024 * 1024
# Past the longest call's deadline: time to send its last bytes and close the connection.
SHUTDOWN_MARGIN_S = 5.0


class Settings(ProcessSettings):
    """Where the gateway listens, how it checks user JWTs, and where its gRPC backends are."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", extra="ignore", hide_input_in_errors=True
    )

    log_level: str = "WARNING"
    host: str = "127.0.0.1"
    port: int = 8080

    # User JWTs: exactly one of an HS256 secret or an RS256 public key (PEM); only that algorithm
    # is accepted.
    jwt_hs256_secret: SecretStr | None = None
    jwt_rs256_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    # gRPC backends ("host:port"). A backend left unset answers 503 on its routes.
    text_target: str | None = None
    multimodal_target: str | None = None
    image_target: str | None = None
    settings_target: str | None = None
    billing_target: str | None = None
    # The gateway's own service token, presented on every gRPC call.
    service_token: SecretStr | None = None

    max_body_bytes: int = 4 * MIB
    # The multimodal route's body limit: images travel inside the JSON as data: URLs (base64,
    # a third larger than the bytes), so it is larger than every other route's.
    multimodal_max_body_bytes: int = 64 * MIB
    # The request line and headers of one request, and the number of headers: past either the
    # server answers 431 and closes the connection without reading the rest (gateway.server).
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    # Deadline of one model call (a whole stream included).
    upstream_deadline_s: float = 120.0
    # SIGTERM: requests in flight get this long to finish. Unset: the longest call's deadline
    # (upstream_deadline_s) plus SHUTDOWN_MARGIN_S, so a rollout never cuts a stream off.
    grace_seconds: float | None = None
    # Deadline of every other backend call (settings, billing, model lists, status checks).
    backend_deadline_s: float = 15.0
    readiness_deadline_s: float = 2.0
    # Verified JWTs are remembered this many at most (until their exp).
    token_cache_size: int = 10_000
    # OpenTelemetry spans for each request. They cost about as much CPU as the rest of the
    # gateway's own work, so by default only when they are exported (OTEL_EXPORTER_OTLP_ENDPOINT).
    tracing: bool | None = None
    # Browser origins allowed to call the API (CORS), e.g. '["https://app.example.com"]'. None by
    # default: a page on another origin cannot read any answer until the operator names it.
    cors_allowed_origins: list[str] = []
    # The built web console served at / (gateway.console); unset: the repository's console/dist.
    console_dir: Path | None = None

    def named_secrets(self) -> dict[str, tuple[str, SecretStr | None]]:
        return {
            "GATEWAY_JWT_HS256_SECRET": ("secret", self.jwt_hs256_secret),
            "GATEWAY_SERVICE_TOKEN": ("service_token", self.service_token),
        }

    def shutdown_grace_s(self) -> float:
        if self.grace_seconds is not None:
            return self.grace_seconds
        return self.upstream_deadline_s + SHUTDOWN_MARGIN_S

    @model_validator(mode="after")
    def _check(self) -> Settings:
        has_secret = self.jwt_hs256_secret is not None
        has_public_key = bool(self.jwt_rs256_public_key)
        if has_secret == has_public_key:
            raise ValueError(
                "set exactly one of GATEWAY_JWT_HS256_SECRET or GATEWAY_JWT_RS256_PUBLIC_KEY"
            )
        if has_secret and len(self.jwt_hs256_secret.get_secret_value().encode()) < 32:  # type: ignore[union-attr]
            raise ValueError("GATEWAY_JWT_HS256_SECRET must be at least 32 bytes (RFC 7518 3.2)")
        if self.service_token is None and any(self.backend_targets().values()):
            raise ValueError("GATEWAY_SERVICE_TOKEN is required to call the gRPC backends")
        if self.max_body_bytes <= 0 or self.multimodal_max_body_bytes <= 0:
            raise ValueError(
                "GATEWAY_MAX_BODY_BYTES and GATEWAY_MULTIMODAL_MAX_BODY_BYTES must be positive"
            )
        if self.max_header_bytes < 1024 or self.max_headers < 8:
            raise ValueError(
                "GATEWAY_MAX_HEADER_BYTES must be at least 1024 and GATEWAY_MAX_HEADERS at least 8"
            )
        return self

    def tracing_enabled(self) -> bool:
        if self.tracing is not None:
            return self.tracing
        return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))

    def backend_targets(self) -> dict[str, str | None]:
        return {
            "text": self.text_target,
            "multimodal": self.multimodal_target,
            "image": self.image_target,
            "settings": self.settings_target,
            "billing": self.billing_target,
        }
