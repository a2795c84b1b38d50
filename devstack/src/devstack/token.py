"""`make token USER=alice`: a development JWT for that user; the token alone on the last line."""

from __future__ import annotations

import sys
import time

import jwt

from devstack.secrets import dev_secrets

TOKEN_TTL_S = 24 * 3600


def mint(user: str, *, member: bool = True, ttl_s: int = TOKEN_TTL_S) -> str:
    now = int(time.time())
    claims = {"sub": user, "member": member, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, dev_secrets()["jwt_hs256_secret"], algorithm="HS256")


def main() -> None:
    user = sys.argv[1] if len(sys.argv) > 1 else "alice"
    sys.stderr.write(f"development token for {user!r} (member), valid 24h:\n")
    sys.stdout.write(mint(user) + "\n")


if __name__ == "__main__":
    main()
