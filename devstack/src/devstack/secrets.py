"""Development secrets for `make run` and `make token`, made once, kept in .devstack/secrets.json.

Kept across runs so that tokens stay valid and stored API keys stay decryptable. Production
deployments take every one of these from their secret manager instead (see deploy/).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

STATE_DIR = Path(os.environ.get("DEVSTACK_DIR", ".devstack")).resolve()


def dev_secrets() -> dict[str, str]:
    path = STATE_DIR / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    values = {
        "jwt_hs256_secret": secrets.token_urlsafe(32),
        "service_token_secret": secrets.token_urlsafe(32),
        "encryption_key": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(values, indent=2))
    return values
