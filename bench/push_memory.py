#!/usr/bin/env python3
"""Memory per subscribed connection of a running `herald serve`, with
clients that offer permessage-deflate (as browsers do) or not.

    herald serve --no-demos --threads 1 --listen 127.0.0.1:18085 &
    python3 bench/push_memory.py --port 18085 --pid $! --connections 4000 [--deflate]

Each client (Python `websockets`) sends `connect`, subscribes to the
channel `bench` and stays; the server's VmRSS before and after, over the
connections, is the figure. It is RSS: allocator slack counts, and runs
differ by a few hundred bytes.
"""

import argparse
import asyncio
import json

import websockets


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def main(args):
    url = f"ws://127.0.0.1:{args.port}/connection/websocket"
    conns = []
    gate = asyncio.Semaphore(100)

    async def one():
        async with gate:
            ws = await websockets.connect(
                url,
                compression="deflate" if args.deflate else None,
                ping_interval=None,
                max_size=None,
            )
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            await ws.recv()
            await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "bench"}}))
            await ws.recv()
            conns.append(ws)

    before = rss(args.pid)
    await asyncio.gather(*[one() for _ in range(args.connections)])
    await asyncio.sleep(args.settle)
    after = rss(args.pid)
    per = (after - before) / args.connections
    print(f"{args.connections} connections, deflate offered: {args.deflate}: {per:,.0f} B per connection")
    for ws in conns:
        await ws.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--connections", type=int, default=4000)
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--settle", type=float, default=1.0)
    asyncio.run(main(p.parse_args()))
