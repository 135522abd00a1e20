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
import http from "node:http";
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 9011);
const channels = new Map(); // channel -> Set of sockets
let offset = 0;

function publish(req, res) {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks));
    } catch {
      res.writeHead(400).end();
      return;
    }
    offset += 1;
    const push = { push: { channel: body.channel, epoch: "ws", pub: { offset, data: body.data } } };
    const frame = Buffer.from(JSON.stringify(push));
    const subs = channels.get(body.channel);
    if (subs) for (const ws of subs) ws.send(frame, { binary: false });
    const out = JSON.stringify({ offset });
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(out) });
    res.end(out);
  });
}

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url.startsWith("/api/publish")) publish(req, res);
  else res.writeHead(404).end();
});
server.keepAliveTimeout = 120_000;

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
