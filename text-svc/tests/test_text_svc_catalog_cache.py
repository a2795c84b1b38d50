"""The live model-list cache: when full it drops the least recently used list, not every list
(the hand-written cache it replaced cleared everything: every caller asked its provider again)."""

from __future__ import annotations

from chat_codecs import ModelInfo
from text_svc.catalog import ModelCatalog
from upstream import Endpoint


class _CountingCatalog(ModelCatalog):
    """The catalog with the provider call replaced by a counter of which endpoints were asked."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(clients=None, max_entries=max_entries)  # type: ignore[arg-type]
        self.asked: list[str] = []

    async def list_now(self, endpoint: Endpoint, timeout_s: float) -> list[ModelInfo]:
        self.asked.append(endpoint.base_url)
        return [ModelInfo("m", endpoint.provider)]


def _endpoint(name: str) -> Endpoint:
    return Endpoint("openai", "openai", f"https://{name}.example/v1", f"key-{name}")


async def test_a_full_cache_drops_only_the_least_recently_used_list() -> None:
    catalog = _CountingCatalog(max_entries=2)
    a, b, c = _endpoint("a"), _endpoint("b"), _endpoint("c")
    await catalog._live_list(a, 1.0)
    await catalog._live_list(b, 1.0)
    await catalog._live_list(a, 1.0)  # a is now the more recently used
    await catalog._live_list(c, 1.0)  # full: b goes
    await catalog._live_list(a, 1.0)
    assert catalog.asked == [a.base_url, b.base_url, c.base_url]
    await catalog._live_list(b, 1.0)
    assert catalog.asked[-1] == b.base_url
