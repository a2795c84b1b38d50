"""Images for response_format "url": kept in Redis under a TTL (the store sweeps itself; every
replica sees every image) and reached through a gateway URL whose signature image-svc makes and
checks: HMAC-SHA256 over the image id, the user it was made for and its expiry. Without a valid
signature, for another user, or after the expiry, an image is not found."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from svc_common.errors import FailedPrecondition, NotFound, PermissionDenied

if TYPE_CHECKING:
    import redis.asyncio as aioredis

_NOT_FOUND = "no such image, or its link has expired: generate it again"


class ImageStore:
    def __init__(
        self, redis: aioredis.Redis | None, secret: str, ttl_s: int, path: str, prefix: str
    ) -> None:
        self._redis = redis
        self._secret = secret.encode()
        self._ttl_s = ttl_s
        self._path = path.rstrip("/")
        self._prefix = prefix + "image:"

    def available(self) -> bool:
        return self._redis is not None and bool(self._secret)

    def _sign(self, image_id: str, user_id: str, expires: int) -> str:
        message = f"{image_id}\n{user_id}\n{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def put(self, user_id: str, data: bytes, media_type: str) -> str:
        """Store the image for `user_id`; its signed gateway URL (path and query)."""
        if self._redis is None or not self._secret:
            raise FailedPrecondition(
                "response_format url is not available on this platform: use b64_json",
                param="response_format",
            )
        image_id = secrets.token_urlsafe(18)
        expires = int(time.time()) + self._ttl_s
        await self._redis.hset(
            self._prefix + image_id, mapping={"data": data, "type": media_type, "user": user_id}
        )
        # The key outlives the URL by a second at most: expiry is the sweep.
        await self._redis.expireat(self._prefix + image_id, expires + 1)
        signature = self._sign(image_id, user_id, expires)
        return f"{self._path}/{image_id}?expires={expires}&signature={signature}"

    async def get(
        self, user_id: str, image_id: str, expires: int, signature: str
    ) -> tuple[bytes, str]:
        if self._redis is None or not self._secret:
            raise NotFound(_NOT_FOUND)
        expected = self._sign(image_id, user_id, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise PermissionDenied("this image link is not valid for you")
        if expires < time.time():
            raise NotFound(_NOT_FOUND)
        stored: dict[bytes, bytes] = await self._redis.hgetall(self._prefix + image_id)  # type: ignore[misc,assignment]
        if not stored or stored.get(b"user", b"").decode() != user_id:
            raise NotFound(_NOT_FOUND)
        return stored[b"data"], stored[b"type"].decode()
