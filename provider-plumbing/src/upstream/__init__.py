"""Provider plumbing shared by the model services (see README.md): the guarded HTTP transport,
the client pool, the attempt policy, provider failures and what callers are told about them,
the SSE and NDJSON readers, and the SSRF-safe fetcher of user URLs."""

from upstream.attempts import (
    FALLBACK_ON,
    AttemptPolicy,
    Attempts,
    OpenStream,
    Route,
    RouteFailed,
)
from upstream.caller_errors import service_error
from upstream.failures import (
    RETRYABLE,
    Failure,
    ProviderError,
    error_message,
    failure_for_status,
    retry_after_seconds,
    status_error,
    transport_error,
)
from upstream.fetch import Fetched, FetchFailed, fetch_bytes
from upstream.ndjson import ndjson_lines
from upstream.pool import (
    ClientPool,
    Connect,
    Endpoint,
    Lease,
    TransportOptions,
    client_key,
    key_hash,
)
from upstream.relay import StreamRelay
from upstream.sse import ServerSentEvent, sse_events
from upstream.transport import AddressRefused, GuardedResolver, ProviderTransport

__all__ = [
    "FALLBACK_ON",
    "RETRYABLE",
    "AddressRefused",
    "AttemptPolicy",
    "Attempts",
    "ClientPool",
    "Connect",
    "Endpoint",
    "Failure",
    "FetchFailed",
    "Fetched",
    "GuardedResolver",
    "Lease",
    "OpenStream",
    "ProviderError",
    "ProviderTransport",
    "Route",
    "RouteFailed",
    "ServerSentEvent",
    "StreamRelay",
    "TransportOptions",
    "client_key",
    "error_message",
    "failure_for_status",
    "fetch_bytes",
    "key_hash",
    "ndjson_lines",
    "retry_after_seconds",
    "service_error",
    "sse_events",
    "status_error",
    "transport_error",
]
