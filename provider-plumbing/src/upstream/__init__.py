"""Provider plumbing shared by the model services (see README.md): the guarded HTTP transport,
provider failures, and the SSE and NDJSON readers."""

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
from upstream.ndjson import ndjson_lines
from upstream.sse import ServerSentEvent, sse_events
from upstream.transport import AddressRefused, GuardedResolver, ProviderTransport

__all__ = [
    "RETRYABLE",
    "AddressRefused",
    "Failure",
    "GuardedResolver",
    "ProviderError",
    "ProviderTransport",
    "ServerSentEvent",
    "error_message",
    "failure_for_status",
    "ndjson_lines",
    "retry_after_seconds",
    "sse_events",
    "status_error",
    "transport_error",
]
