#!/usr/bin/env python3
"""A Python `websockets` echo server for herald's interop tests.

    python_server.py [--cert PEM --key PEM]

Listens on 127.0.0.1, a free port, with permessage-deflate on (the library's
default) and the subprotocol "chat" selected when offered. Prints JSON lines:

    {"event":"listening","port":N}
    {"event":"open","protocol":...,"extensions":[...]}      per connection
    {"event":"closed","code":N,"reason":...}                per connection

Echoes every message; the text "close me" makes it close with 1001
"going away". Runs until killed or until its stdin closes.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import threading

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def exit_when_stdin_closes():
    """The test holds our stdin open; if it dies without killing us, its end
    closes and we leave rather than linger."""

    def watch():
        # os.read, not sys.stdin: a daemon thread blocked in a buffered
        # read aborts the interpreter at shutdown.
        while os.read(0, 4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def emit(**fields):
    print(json.dumps(fields, ensure_ascii=False, separators=(",", ":")), flush=True)


def select_chat(connection, subprotocols):
    # "chat" if offered, else none; the library's default would refuse a
    # client that offers nothing.
    return "chat" if "chat" in subprotocols else None


async def handler(ws):
    emit(
        event="open",
        protocol=ws.subprotocol,
        extensions=[e.name for e in ws.protocol.extensions],
    )
    try:
        async for msg in ws:
            if msg == "close me":
                await ws.close(1001, "going away")
                break
            await ws.send(msg)
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=tls,
        select_subprotocol=select_chat,
        max_size=16 << 20,
        ping_interval=None,
        close_timeout=10,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit(event="listening", port=port)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    exit_when_stdin_closes()
    asyncio.run(main())
