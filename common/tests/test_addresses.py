"""One rule for "public address": every spelling of a non-public address is refused."""

from __future__ import annotations

import ipaddress

import pytest

from svc_common.addresses import (
    UrlRejected,
    check_url,
    is_public_address,
    normalise_hosts,
    parse_ip_literal,
)

NOT_PUBLIC = [
    # IPv4 ranges
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.20",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (CGNAT)
    "100.100.100.200",  # Alibaba Cloud metadata, inside CGNAT
    "0.0.0.0",
    "192.0.0.8",  # IETF protocol assignments
    "192.0.2.1",  # documentation
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "192.88.99.1",  # 6to4 relay anycast
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    # IPv6 ranges
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "3fff::1",
    "100::1",
    # IPv4-mapped and IPv4-translated
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0:7f00:1",
    # IPv4-compatible (deprecated, still routed by some stacks to the IPv4 host)
    "::127.0.0.1",
    "::7f00:1",
    "::a9fe:a9fe",
    "::10.0.0.1",
    # 6to4: 2002:AABB:CCDD:: embeds AA.BB.CC.DD
    "2002:7f00:1::",
    "2002:a9fe:a9fe::",
    "2002:0a00:0001::1",
    # NAT64, well-known prefix and local-use prefix
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a9fe:a9fe",
    "64:ff9b:1::5db8:d70e",  # local-use: refused whatever it embeds
    # Teredo: server 65.54.227.120, client 127.0.0.1 (obfuscated as 80ff:fffe)
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    # Teredo with a private server address
    "2001:0:a00:1:8000:63bf:a2fe:fdfe",
]

PUBLIC = [
    "93.184.215.14",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.215.14",
    "2002:5db8:d70e::1",  # 6to4 of 93.184.215.14
    "64:ff9b::5db8:d70e",  # NAT64 of 93.184.215.14
    # Teredo: server 65.54.227.120, client 93.184.215.14 (obfuscated)
    "2001:0:4136:e378:8000:63bf:a247:28f1",
]


@pytest.mark.parametrize("spelling", NOT_PUBLIC)
def test_non_public_addresses_in_every_spelling_are_refused(spelling: str) -> None:
    assert not is_public_address(ipaddress.ip_address(spelling))


@pytest.mark.parametrize("spelling", PUBLIC)
def test_public_addresses_are_allowed(spelling: str) -> None:
    assert is_public_address(ipaddress.ip_address(spelling))


BAD_URLS = [
    "http://[::127.0.0.1]/",
    "http://[::7f00:1]:11434/v1",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/latest/meta-data",
    "http://[64:ff9b:1::a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    "http://[fe80::1%25eth0]/",
    # Decimal, octal and short IPv4 spellings: names to urlsplit, 127.0.0.1 to the resolver.
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://localhost./",
    "http://LOCALHOST/",
    "http://metadata.google.internal./",
]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_urls_to_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlRejected) as caught:
        await check_url(url, [])
    assert str(caught.value).startswith("base_url host ")


async def test_an_allow_listed_host_is_accepted_as_written() -> None:
    allowed = normalise_hosts([" [::7F00:1] ", "Ollama.Internal.", ""])
    assert allowed == ["::7f00:1", "ollama.internal"]
    assert await check_url("http://[::7f00:1]:11434/", allowed) == "http://[::7f00:1]:11434"
    assert await check_url("http://OLLAMA.internal:11434", allowed) == (
        "http://OLLAMA.internal:11434"
    )


def test_ip_literals_are_only_the_canonical_forms() -> None:
    assert parse_ip_literal("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip_literal("127.0.0.1") == ipaddress.ip_address("127.0.0.1")
    # Left to the resolver, where they are judged as what they resolve to.
    assert parse_ip_literal("2130706433") is None
    assert parse_ip_literal("0177.0.0.1") is None
