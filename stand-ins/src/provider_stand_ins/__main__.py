"""``python -m provider_stand_ins``: serve provider stand-ins in a process of their own.

Prints one ready line per provider, ``stand-in ready provider=<name> url=<base url>``, and
serves until SIGINT or SIGTERM. ``--provider all`` serves every provider (openai, anthropic,
ollama, stability, automatic1111, comfyui) on ``--port``, ``--port``+1, ... (each on a free port
when ``--port`` is 0). Image knobs are flags too: ``--step-delay-s 0.05 --image-steps 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from provider_stand_ins.behaviour import Behaviour
from provider_stand_ins.runner import PROVIDERS, StandIn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m provider_stand_ins", description=__doc__)
    parser.add_argument("--provider", choices=[*PROVIDERS, "all"], default="openai")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keys", default="", help="comma-separated accepted API keys")
    parser.add_argument(
        "--models", default=None, help="comma-separated models (default: provider's)"
    )
    parser.add_argument(
        "--demo", action="store_true", help="accept any key and any model (for make run)"
    )
    parser.add_argument("--log-size", type=int, default=10_000)
    defaults = Behaviour()
    for name, value in defaults.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", default=None)
        else:
            kind = float if name.endswith("_s") else int
            parser.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper())
    return parser.parse_args(argv)


def knobs_from(args: argparse.Namespace) -> dict[str, Any]:
    knobs = {name: getattr(args, name) for name in Behaviour().to_dict()}
    knobs = {name: value for name, value in knobs.items() if value is not None}
    if args.demo:
        knobs.update(accept_any_key=True, accept_any_model=True)
    return knobs


async def serve(args: argparse.Namespace) -> None:
    names = list(PROVIDERS) if args.provider == "all" else [args.provider]
    keys = [key for key in args.keys.split(",") if key]
    models = [model for model in args.models.split(",") if model] if args.models else None
    knobs = knobs_from(args)
    stand_ins = [
        StandIn(
            name,
            keys=keys,
            models=models,
            host=args.host,
            port=args.port + offset if args.port else 0,
            log_size=args.log_size,
            **knobs,
        )
        for offset, name in enumerate(names)
    ]
    for stand_in in stand_ins:
        await stand_in.start(standalone=True)
        sys.stdout.write(f"stand-in ready provider={stand_in.provider} url={stand_in.base_url}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await asyncio.gather(*(stand_in.stop() for stand_in in stand_ins))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the stand-ins still work, only slower
        asyncio.run(serve(args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args))


if __name__ == "__main__":
    main()
