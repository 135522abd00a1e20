#!/usr/bin/env node
// A Node `ws` echo server for herald's interop tests.
//
//   node node_server.mjs [--cert PEM --key PEM]
//
// Listens on 127.0.0.1, a free port, with permessage-deflate on and the
// subprotocol "chat" selected when offered. Prints JSON lines:
//
//   {"event":"listening","port":N}
//   {"event":"open","protocol":...,"extensions":[...]}    per connection
//   {"event":"closed","code":N,"reason":...}              per connection
//
// Echoes every message; the text "close me" makes it close with 1001
// "going away". Runs until killed or until its stdin closes.
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { parseArgs } from "node:util";
import { WebSocketServer } from "ws";

const { values } = parseArgs({ options: { cert: { type: "string" }, key: { type: "string" } } });
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
// The test holds our stdin open; if it dies without killing us, its end
// closes and we leave rather than linger.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();

const options = {
  perMessageDeflate: true,
  maxPayload: 16 << 20,
  handleProtocols: (protocols) => (protocols.has("chat") ? "chat" : false),
};
let wss;
let listening;
if (values.cert) {
  const https = createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key) });
  wss = new WebSocketServer({ ...options, server: https });
  listening = new Promise((resolve) => https.listen(0, "127.0.0.1", () => resolve(https.address())));
} else {
  wss = new WebSocketServer({ ...options, host: "127.0.0.1", port: 0 });
  listening = new Promise((resolve) => wss.on("listening", () => resolve(wss.address())));
}

wss.on("connection", (ws) => {
  emit({
    event: "open",
    protocol: ws.protocol || null,
    extensions: ws.extensions ? ws.extensions.split(",").map((e) => e.trim()).filter(Boolean) : [],
  });
  ws.on("message", (data, isBinary) => {
    if (!isBinary && data.toString() === "close me") {
      ws.close(1001, "going away");
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on("close", (code, reason) => emit({ event: "closed", code, reason: reason.toString() }));
});

const address = await listening;
emit({ event: "listening", port: address.port });
