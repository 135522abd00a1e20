#!/usr/bin/env node
// Node `ws` fan-out peer for `herald bench fanout` (bench/fanout.py).
//
//   node fanout_ws.mjs [port]
//
// A broadcast loop as ws's README writes it: for each publication, one
// ws.send() per subscriber of a Buffer encoded once. It speaks just enough
// of herald's push protocol (docs/protocol.md) for the generator to drive
// it like `herald serve`: `connect` and `subscribe` commands get
// `{"id":N,"result":{}}`; `POST /api/publish` {"channel","data"} sends
// every subscriber {"push":{"channel","epoch","pub":{"offset","data"}}}.
// No permessage-deflate. One process, one event loop: fanout.py pins it to
// a core with taskset.
import { WebSocketServer } from "ws";

import { publishServer } from "./fanout_api.mjs";

const port = Number(process.argv[2] ?? 9011);
const channels = new Map(); // channel -> Set of sockets

const server = publishServer((channel, data, offset) => {
  const push = { push: { channel, epoch: "ws", pub: { offset, data } } };
  const frame = Buffer.from(JSON.stringify(push));
  const subs = channels.get(channel);
  if (subs) for (const ws of subs) ws.send(frame, { binary: false });
});

const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });
wss.on("connection", (ws) => {
  const mine = [];
  ws.on("message", (data) => {
    let cmd;
    try {
      cmd = JSON.parse(data);
    } catch {
      return;
    }
    if (cmd.subscribe && typeof cmd.subscribe.channel === "string") {
      let subs = channels.get(cmd.subscribe.channel);
      if (!subs) channels.set(cmd.subscribe.channel, (subs = new Set()));
      subs.add(ws);
      mine.push(subs);
    }
    ws.send(JSON.stringify({ id: cmd.id, result: {} }));
  });
  ws.on("close", () => {
    for (const subs of mine) subs.delete(ws);
  });
  ws.on("error", () => {});
});

server.listen(port, "127.0.0.1", () =>
  console.error(`node ws fan-out listening on http://127.0.0.1:${port}`),
);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
