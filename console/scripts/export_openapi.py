"""Writes the gateway's OpenAPI document to console/src/api/openapi.json (or, with --check, fails
when the committed one differs), so that the console's types follow the routes it calls.

    .venv/bin/python console/scripts/export_openapi.py [--check]
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.environment import Settings

OPENAPI_JSON = Path(__file__).resolve().parents[1] / "src" / "api" / "openapi.json"


def gateway_openapi() -> str:
    # No backend is called: the document only needs an app.
    settings = Settings(environment="development", jwt_hs256_secret=secrets.token_urlsafe(32))
    document: dict[str, Any] = create_app(settings).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = gateway_openapi()
    if "--check" in argv:
        current = OPENAPI_JSON.read_text() if OPENAPI_JSON.exists() else ""
        if current != text:
            sys.stderr.write(
                f"{OPENAPI_JSON} differs from the gateway's routes: run `make console-openapi` "
                "and fix what the console's type check then reports\n"
            )
            return 1
        return 0
    OPENAPI_JSON.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
