"""Which user-supplied base URLs a config may name, checked when the config is saved.

The rule (http(s) only, and every address the host resolves to public unless the operator
allow-listed the host) is `svc_common.addresses`, the same one the model services apply again
when they connect: DNS answers change, and so does the allow-list.
"""

from __future__ import annotations

from collections.abc import Collection

from svc_common.addresses import UrlRejected, check_url

BaseUrlRejected = UrlRejected


async def check_base_url(url: str, allowed_hosts: Collection[str]) -> str:
    """The URL to store (trimmed, without a trailing slash), or BaseUrlRejected."""
    return await check_url(url, allowed_hosts, "base_url")
