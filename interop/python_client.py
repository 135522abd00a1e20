#!/usr/bin/env python3
"""A Python `websockets` client for herald's interop tests.

    python_client.py URL SCENARIO [--protocol P]... [--cafile PEM]

Prints JSON lines the Rust test compares with what it expects:

    {"event":"open","protocol":...,"extensions":[...]}
    {"event":"echo","case":...,"bytes":N,"same":true}     (scenario echo)
    {"event":"closed","code":N,"reason":...}

Scenarios:
    echo          send every case of the matrix, check each echo, close 1000
    client_close  close with 4000 "done"
    server_close  send "close me" and wait for the server to close
    reflect       send back every message received, until the server closes

The cases are the same as in interop/scenarios.mjs and tests/common/mod.rs.
Exits when its stdin closes (the test that started it is gone).
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import threading

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TEXT_UNIT = "κόσμε0123456789abcdefghijkl"  # 32 bytes of UTF-8


def cases():
    yield "text", "hello, herald ☃"
    yield "binary", bytes(range(256))
    yield "empty", b""
    yield "binary_1mib", (bytes(range(251)) * ((1 << 20) // 251 + 1))[: 1 << 20]
    yield "text_1mib", TEXT_UNIT * ((1 << 20) // 32)


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


def size(msg):
    return len(msg.encode()) if isinstance(msg, str) else len(msg)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("scenario", choices=["echo", "client_close", "server_close", "reflect"])
    parser.add_argument("--protocol", action="append", default=[])
    parser.add_argument("--cafile")
    args = parser.parse_args()

    tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    async with connect(
        args.url,
        subprotocols=args.protocol or None,
        ssl=tls,
        max_size=16 << 20,
        # Keepalive pings would only add noise to these short runs.
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
    ) as ws:
        emit(
            event="open",
            protocol=ws.subprotocol,
            extensions=[e.name for e in ws.protocol.extensions],
        )
        if args.scenario == "echo":
            for case, msg in cases():
                await ws.send(msg)
                got = await ws.recv()
                emit(
                    event="echo",
                    case=case,
                    bytes=size(msg),
                    same=type(got) is type(msg) and got == msg,
                )
            await ws.close(1000)
        elif args.scenario == "client_close":
            await ws.close(4000, "done")
        elif args.scenario == "server_close":
            await ws.send("close me")
            try:
                got = await ws.recv()
                emit(event="unexpected", message=str(got)[:80])
            except ConnectionClosed:
                pass
        elif args.scenario == "reflect":
            # Ends quietly when the server closes normally.
            async for msg in ws:
                await ws.send(msg)
        await ws.wait_closed()
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


if __name__ == "__main__":
    exit_when_stdin_closes()
    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    except Exception as e:  # noqa: BLE001 (report anything, exit non-zero)
        emit(event="error", error=f"{type(e).__name__}: {e}")
        sys.exit(1)
