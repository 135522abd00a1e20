#!/usr/bin/env node
// `herald serve --tls-cert --tls-key` in Debian's Chromium, driven by
// playwright-core: the page loads over https:// and herald's wire protocol
// runs over wss:// until one publication of the quotes feed arrives.
//
//   node web/tests/tls.mjs https://127.0.0.1:8443 CERT.pem
//
// Chromium trusts the server's certificate through a pin of its public key
// (--ignore-certificate-errors-spki-list), not a blanket ignore; without
// the pin the page must not load.
// Prints one JSON line per check: {"check": NAME, "ok": true|false, ...};
// exits 1 if any failed (2 if Chromium could not start).
// crates/herald-cli/tests/browser_demos.rs starts the server and runs this.
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, certPath] = process.argv.slice(2);
if (!/^https:\/\//.test(base || "") || !certPath) {
  console.error("usage: node tls.mjs https://HOST:PORT CERT.pem");
  process.exit(2);
}
const CHECK_TIMEOUT = 20000;
const spki = new X509Certificate(readFileSync(certPath)).publicKey.export({ type: "spki", format: "der" });
const pin = createHash("sha256").update(spki).digest("base64");

const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function launch(extra) {
  try {
    return await chromium.launch({
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: [...args, ...extra],
      timeout: 30000,
    });
  } catch (e) {
    console.log(JSON.stringify({ check: "launch", ok: false, error: String(e) }));
    process.exit(2);
  }
}

const checks = {
  // Without the pin, the certificate (from a CA Chromium does not know)
  // is refused: the server really speaks TLS, and the pin is what lets
  // the next check in.
  "tls/untrusted_without_pin": async () => {
    const browser = await launch([]);
    try {
      const page = await browser.newPage();
      let error = null;
      try {
        await page.goto(`${base}/health`, { timeout: CHECK_TIMEOUT });
      } catch (e) {
        error = String(e);
      }
      if (!error || !/ERR_CERT/.test(error)) throw new Error(`expected a certificate error, got ${error}`);
      return { error: error.split("\n")[0] };
    } finally {
      await browser.close();
    }
  },
  "tls/wss_publication": async () => {
    const browser = await launch([`--ignore-certificate-errors-spki-list=${pin}`]);
    try {
      const page = await browser.newPage();
      const response = await page.goto(`${base}/health`, { timeout: CHECK_TIMEOUT });
      if (!response || response.status() !== 200) throw new Error(`GET /health: ${response && response.status()}`);
      const wss = base.replace(/^https:/, "wss:") + "/connection/websocket";
      const got = await page.evaluate(
        (url) =>
          new Promise((resolve, reject) => {
            const ws = new WebSocket(url);
            ws.onerror = () => reject(new Error("WebSocket error"));
            ws.onopen = () => {
              ws.send(JSON.stringify({ id: 1, connect: { name: "tls" } }));
              ws.send(JSON.stringify({ id: 2, subscribe: { channel: "quotes:ACME" } }));
            };
            ws.onmessage = (e) => {
              const m = JSON.parse(e.data);
              if (m.error) reject(new Error(e.data));
              if (m.push && m.push.pub) {
                ws.close(1000);
                resolve({ url: ws.url, channel: m.push.channel, offset: m.push.pub.offset });
              }
            };
          }),
        wss,
      );
      if (got.channel !== "quotes:ACME") throw new Error(`publication on ${got.channel}`);
      return got;
    } finally {
      await browser.close();
    }
  },
};

let failed = 0;
for (const [name, fn] of Object.entries(checks)) {
  const t0 = Date.now();
  let timer;
  try {
    const detail = await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT} ms`)), CHECK_TIMEOUT * 2);
      }),
    ]);
    console.log(JSON.stringify({ check: name, ok: true, ms: Date.now() - t0, ...detail }));
  } catch (e) {
    failed++;
    console.log(JSON.stringify({ check: name, ok: false, error: String(e && e.message ? e.message : e) }));
  } finally {
    clearTimeout(timer);
  }
}
process.exit(failed ? 1 : 0);
