"""Test images, and an https server that serves them (a self-signed CA the test trusts), for the
image-URL paths of multimodal-svc: real TLS, real redirects, real bytes."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (64, 48), colour: str = "red", **save: object
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt, **save)
    return buffer.getvalue()


def noisy_jpeg(size: tuple[int, int], quality: int = 95) -> bytes:
    """A JPEG that compresses badly (random noise), for large byte counts at a given size."""
    import os

    raw = os.urandom(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, raw).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    import base64

    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _self_signed(tmp: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test images")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


@dataclass
class ImageServer:
    base_url: str  # https://127.0.0.1:<port>
    ca_file: str  # trust this to fetch from it
    files: dict[str, bytes]  # path -> body; "/redirect?to=<url>" answers 302
    requests: list[dict[str, str]]  # headers of each request received


@contextlib.asynccontextmanager
async def serving_images(files: dict[str, bytes]) -> AsyncIterator[ImageServer]:
    requests: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        requests.append(dict(request.headers))
        if request.path == "/redirect":
            raise web.HTTPFound(request.query["to"])
        body = files.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        # A lying content type: the platform must sniff the bytes.
        return web.Response(body=body, content_type="text/plain")

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = _self_signed(tmp)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(runner, sock, ssl_context=context)
        await site.start()
        try:
            yield ImageServer(f"https://127.0.0.1:{port}", cert, files, requests)
        finally:
            await runner.cleanup()
