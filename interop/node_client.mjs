#!/usr/bin/env node
// A Node `ws` client for herald's interop tests.
//
//   node node_client.mjs URL SCENARIO [--protocol P]... [--cafile PEM]
//
// Runs a scenario of scenarios.mjs and prints what it saw as JSON lines;
// permessage-deflate is offered (ws's default). Exits when its stdin closes.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { runScenario } from "./scenarios.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    protocol: { type: "string", multiple: true, default: [] },
    cafile: { type: "string" },
  },
});
const [url, scenario] = positionals;
const options = { perMessageDeflate: true, maxPayload: 16 << 20, handshakeTimeout: 10000 };
if (values.cafile) options.ca = [readFileSync(values.cafile)];

const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
// The test holds our stdin open; if it dies without killing us, its end
// closes and we leave rather than linger.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
const timer = setTimeout(() => {
  emit({ event: "error", error: "scenario timed out" });
  process.exit(1);
}, 30000);
try {
  await runScenario(() => new WebSocket(url, values.protocol, options), scenario, emit);
  clearTimeout(timer);
  process.exit(0);
} catch (e) {
  emit({ event: "error", error: String(e) });
  process.exit(1);
}
