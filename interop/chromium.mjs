#!/usr/bin/env node
// Chromium (Debian's, driven by playwright-core) as a WebSocket client for
// herald's interop tests.
//
//   node chromium.mjs PAGE_URL WS_URL SCENARIO [--protocol P]... [--insecure]
//
// Opens PAGE_URL (a page the test serves, so the socket has a real Origin),
// runs a scenario of scenarios.mjs in it with `new WebSocket(WS_URL,
// protocols)` and prints what the page saw as JSON lines. --insecure adds
// --ignore-certificate-errors, for a wss:// server with a self-signed
// certificate. Never downloads a browser: Chromium is /usr/bin/chromium
// (scripts/install-peers). Exits when its stdin closes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { runScenario } from "./scenarios.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    protocol: { type: "string", multiple: true, default: [] },
    insecure: { type: "boolean", default: false },
  },
});
const [pageUrl, wsUrl, scenario] = positionals;
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
if (values.insecure) args.push("--ignore-certificate-errors");

// A fresh profile every run, removed afterwards.
const profile = mkdtempSync(join(tmpdir(), "herald-chromium-"));

// The test holds our stdin open; if it dies without killing us, its end
// closes and we leave (Chromium exits with its pipe to us).
const leave = () => {
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
};
process.stdin.on("end", leave);
process.stdin.on("error", leave);
process.stdin.resume();
let context;
let failed = false;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args,
    timeout: 20000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e}\n`));
  await page.goto(pageUrl, { timeout: 10000 });
  const run = `(async () => {
    const out = [];
    const scenario = (${runScenario.toString()});
    const open = () => new WebSocket(${JSON.stringify(wsUrl)}, ${JSON.stringify(values.protocol)});
    const timeout = new Promise((resolve) => setTimeout(() => resolve("timed out"), 25000));
    const done = scenario(open, ${JSON.stringify(scenario)}, (o) => out.push(o)).then(
      () => null,
      (e) => String(e),
    );
    const error = await Promise.race([done, timeout]);
    if (error) out.push({ event: "error", error });
    return out;
  })()`;
  for (const o of await page.evaluate(run)) {
    print(o);
    if (o.event === "error") failed = true;
  }
} catch (e) {
  print({ event: "error", error: String(e) });
  failed = true;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
