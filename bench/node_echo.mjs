#!/usr/bin/env node
// Node `ws` echo server for scripts/bench.
//
//   node node_echo.mjs [port] [--deflate]
//
// Listens on 127.0.0.1 (9004 by default) and echoes every message with
// its type. permessage-deflate is off unless --deflate (then ws's
// defaults: 1 KiB threshold, context takeover). One process, one event
// loop; the script pins it to a core with taskset.
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
const port = Number(args.find((a) => /^\d+$/.test(a)) ?? 9004);
const deflate = args.includes("--deflate");

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  perMessageDeflate: deflate,
  maxPayload: 64 << 20,
  clientTracking: false,
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});
wss.on("listening", () => console.error(`node ws echo listening on ws://127.0.0.1:${port}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
