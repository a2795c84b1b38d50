"""python -m billing_svc [serve | migrate | grant USER AMOUNT_MICROS [--reason R] [--grant-id ID]]

serve    the gRPC service, the usage-event consumer and the hold sweeper (BILLING_SVC_* settings)
migrate  apply the billing schema's migrations and exit
grant    credit a user (operator command, straight to the database); prints the new balance
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid

from billing_svc import accounts, db
from billing_svc.environment import Settings
from billing_svc.prices import format_credits
from billing_svc.server import create_server
from svc_common import lifecycle
from svc_common.errors import ServiceError
from svc_common.logging import setup_logging
from svc_common.telemetry import setup_tracing

log = logging.getLogger("billing_svc")


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    setup_tracing("billing-svc")
    return await lifecycle.serve(lambda: create_server(settings))


async def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = await db.migrate(settings.database_url.get_secret_value())
    log.info("migrations applied now: %s", ", ".join(applied) or "none (up to date)")
    return 0


async def run_grant(settings: Settings, args: argparse.Namespace) -> int:
    database_url = settings.database_url.get_secret_value()
    await db.migrate(database_url)
    conn = await db.connect_with_retry(database_url)
    try:
        balance = await accounts.grant(
            conn,
            user_id=args.user,
            amount_micros=args.amount_micros,
            grant_id=args.grant_id or f"cli:{uuid.uuid4()}",
            reason=args.reason,
            starting_balance_micros=settings.starting_balance_micros,
        )
    except ServiceError as err:
        sys.stderr.write(f"grant refused: {err.message}\n")
        return 2
    finally:
        await conn.close()
    sys.stdout.write(
        f"{args.user}: balance {balance} micro-credits ({format_credits(balance)} credits)\n"
    )
    return 0


COMMANDS = {"serve": serve, "migrate": run_migrate, "grant": run_grant}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m billing_svc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve gRPC, consume usage events, sweep holds (default)")
    commands.add_parser("migrate", help="apply migrations and exit")
    grant = commands.add_parser("grant", help="credit a user's account")
    grant.add_argument("user")
    grant.add_argument("amount_micros", type=int, help="micro-credits (1 credit = 1000000)")
    grant.add_argument("--reason", default="operator grant")
    grant.add_argument("--grant-id", default="", help="idempotency key (default: a new one)")
    args = parser.parse_args(argv)
    args.command = args.command or "serve"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings()
    setup_logging("billing-svc", settings.log_level)
    return lifecycle.run(COMMANDS[args.command](settings, args))


if __name__ == "__main__":
    sys.exit(main())
