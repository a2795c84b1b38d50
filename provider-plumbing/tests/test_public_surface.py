"""The library's public names are exactly the declared ones, so it cannot grow into a catch-all:
adding a name is a decision this test records."""

from __future__ import annotations

import types

import upstream

EXPECTED = {
    # failures
    "RETRYABLE",
    "Failure",
    "ProviderError",
    "error_message",
    "failure_for_status",
    "retry_after_seconds",
    "status_error",
    "transport_error",
    "service_error",
    # the fetcher of user URLs (image URLs)
    "FetchFailed",
    "Fetched",
    "fetch_bytes",
    # transport
    "AddressRefused",
    "GuardedResolver",
    "ProviderTransport",
    # readers
    "ServerSentEvent",
    "ndjson_lines",
    "sse_events",
    # the client pool
    "ClientPool",
    "Connect",
    "Endpoint",
    "Lease",
    "TransportOptions",
    "client_key",
    "key_hash",
    # the attempt policy
    "FALLBACK_ON",
    "AttemptPolicy",
    "Attempts",
    "OpenStream",
    "Route",
    "RouteFailed",
    # relaying a provider stream to a caller who may leave at any send
    "StreamRelay",
}


def test_the_library_declares_exactly_its_public_names() -> None:
    assert set(upstream.__all__) == EXPECTED
    assert len(upstream.__all__) == len(EXPECTED)  # no name declared twice
    assert all(hasattr(upstream, name) for name in upstream.__all__)


def test_nothing_else_public_at_top_level() -> None:
    public = {
        name
        for name, value in vars(upstream).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == EXPECTED
