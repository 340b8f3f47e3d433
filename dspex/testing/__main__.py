"""``python -m dspex.testing serve``: run a ScriptedLM as its own process (for benchmarks).

Prints the base URL (``http://127.0.0.1:<port>/v1``) on the first line of stdout, then serves until
SIGINT or SIGTERM. Requests are not recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from dspex.testing._actions import Reply
from dspex.testing._server import ScriptedLM


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dspex.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a fixed reply until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--reply", default="[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    serve.add_argument("--model", default="scripted-lm", help="the name GET /v1/models lists")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    script = Reply(args.reply, latency=args.latency)
    async with ScriptedLM(
        script, model=args.model, host=args.host, port=args.port, record=False
    ) as lm:
        print(lm.base_url, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
