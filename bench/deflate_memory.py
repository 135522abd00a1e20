#!/usr/bin/env python3
"""Server memory per connection with permessage-deflate offered, as browsers do.

    cargo build --release -p herald --example broadcast
    target/release/examples/broadcast shared 9400 &   # or per-connection, off
    python3 bench/deflate_memory.py --port 9400 --server-pid $! --connections 1000,3000

Opens Python `websockets` clients (deflate offered with the library's
defaults, like a browser's offer; --no-deflate offers nothing) in steps up
to each count of --connections. Each client sends one 200-byte compressible
message (a subscribe command; not with --no-send) and waits for 3
publications, so that every connection has inflated and been sent
compressed messages. After each step, once every client has its 3
publications, the server's RSS is read from /proc. Prints one JSON line:
RSS before and at each step, the average per connection at each step and
the marginal cost per connection between the first and the last step (the
allocator's one-off caches for zlib's short-lived buffers stay out of it).
"""

import argparse
import asyncio
import json
import resource

from websockets.asyncio.client import connect


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Counter:
    def __init__(self):
        self.done = 0
        self.target = 0
        self.ready = None

    def one_done(self):
        self.done += 1
        if self.done >= self.target and not self.ready.done():
            self.ready.set_result(None)


async def client(url, deflate, send, counter):
    async with connect(
        url,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_queue=None,
        open_timeout=120,
    ) as ws:
        if send:
            await ws.send(
                '{"method":"subscribe","params":{"channel":"news"},"id":1,"pad":"'
                + "x" * 140
                + '"}'
            )
        n = 0
        async for _ in ws:
            n += 1
            if n == 3:
                counter.one_done()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=9400)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--connections", default="1000,3000", help="counts to measure at")
    p.add_argument("--no-deflate", action="store_true")
    p.add_argument("--no-send", action="store_true", help="clients only listen")
    args = p.parse_args()
    steps = [int(n) for n in args.connections.split(",")]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, steps[-1] + 1024), hard))

    url = f"ws://127.0.0.1:{args.port}/"
    before = rss_kib(args.server_pid)
    counter = Counter()
    tasks = []
    rss = []
    for target in steps:
        counter.target = target
        counter.ready = asyncio.get_running_loop().create_future()
        while len(tasks) < target:
            for _ in range(min(200, target - len(tasks))):
                tasks.append(
                    asyncio.create_task(
                        client(url, not args.no_deflate, not args.no_send, counter)
                    )
                )
            await asyncio.sleep(0.05)
        await asyncio.wait_for(counter.ready, 300)
        # Let the server settle after its last write.
        await asyncio.sleep(1.5)
        rss.append(rss_kib(args.server_pid))
    result = {
        "deflate_offered": not args.no_deflate,
        "clients_send": not args.no_send,
        "server_rss_before_kib": before,
        "steps": [
            {
                "connections": n,
                "server_rss_kib": r,
                "bytes_per_connection": round((r - before) * 1024 / n),
            }
            for n, r in zip(steps, rss)
        ],
    }
    if len(steps) > 1:
        result["marginal_bytes_per_connection"] = round(
            (rss[-1] - rss[0]) * 1024 / (steps[-1] - steps[0])
        )
    print(json.dumps(result))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
