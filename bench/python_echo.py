#!/usr/bin/env python3
"""Python `websockets` echo server for scripts/bench.

    python3 python_echo.py [port] [--deflate]

Listens on 127.0.0.1 (9005 by default) and echoes every message (text
stays text: websockets decodes and so validates it). permessage-deflate
is off unless --deflate (then the library's defaults). Keepalive pings
off; standard asyncio event loop, one thread.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        # The generator ends runs by dropping its connections.
        pass


async def main():
    args = sys.argv[1:]
    port = next((int(a) for a in args if a.isdigit()), 9005)
    deflate = "--deflate" in args
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        "127.0.0.1",
        port,
        compression="deflate" if deflate else None,
        max_size=64 << 20,
        max_queue=None,
        ping_interval=None,
        backlog=1024,
    ):
        print(f"python websockets echo listening on ws://127.0.0.1:{port}", file=sys.stderr)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
