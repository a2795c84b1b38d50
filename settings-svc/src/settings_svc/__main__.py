"""python -m settings_svc [serve | migrate | rotate-keys]"""

from __future__ import annotations

import argparse
import logging
import sys

from settings_svc.environment import Settings
from settings_svc.keystore import KeyConfigError, KeyRing
from settings_svc.migrate import migrate
from settings_svc.presets import PresetCatalog
from settings_svc.rotation import rotate_keys
from settings_svc.server import create_server
from settings_svc.store import create_pool
from svc_common import lifecycle
from svc_common.logging import setup_logging
from svc_common.telemetry import setup_tracing

log = logging.getLogger("settings_svc")


async def serve(settings: Settings) -> int:
    setup_tracing("settings-svc")
    return await lifecycle.serve(lambda: create_server(settings))


async def run_migrate(settings: Settings) -> int:
    keyring = KeyRing.from_settings(settings)
    pool = await create_pool(settings)
    try:
        applied = await migrate(pool, keyring, PresetCatalog(), settings.batch_size)
    finally:
        await pool.close()
    log.info("migrations applied now: %s", ", ".join(applied) or "none (up to date)")
    return 0


async def run_rotate_keys(settings: Settings) -> int:
    keyring = KeyRing.from_settings(settings)
    pool = await create_pool(settings)
    try:
        result = await rotate_keys(pool, keyring, settings.batch_size)
    finally:
        await pool.close()
    return 1 if result.failed else 0


COMMANDS = {"serve": serve, "migrate": run_migrate, "rotate-keys": run_rotate_keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m settings_svc", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    settings = Settings()
    setup_logging("settings-svc", settings.log_level)
    try:
        return lifecycle.run(COMMANDS[args.command](settings))
    except KeyConfigError as err:
        log.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
