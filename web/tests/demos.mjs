#!/usr/bin/env node
// The demo pages of `herald serve`, in Debian's Chromium driven by
// playwright-core.
//
//   node web/tests/demos.mjs http://127.0.0.1:8090 [--server-pid PID] [--block-websocket] [CHECK...]
//
// With --server-pid, a last check stops the server (SIGTERM) and watches
// herald.js obey its drain: close 1001 with a "retry in N ms" hint.
// With --token-required (a server with --token-secret), the pages that
// need a token say so, and the QR login brings its own.
// With --block-websocket, the pages are loaded through a proxy
// (tests/proxy.mjs) that refuses every WebSocket upgrade with 403, so
// herald.js must fall back to the HTTP transports; the proxy also cuts
// every connection mid-way to force reconnects, and each check then counts
// every message arrived, once. The checks of each mode are listed in
// CHECKS below.
// Prints one JSON line per check: {"check": NAME, "ok": true|false, ...};
// exits 1 if any failed (2 if Chromium could not start).
// crates/herald-cli/tests/browser_demos.rs starts the server and runs this.
// Never downloads a browser: Chromium is /usr/bin/chromium.
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import jsQR from "jsqr";
import { startProxy } from "./proxy.mjs";

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "server-pid": { type: "string" },
    "block-websocket": { type: "boolean" },
    "token-required": { type: "boolean" },
  },
});
const base = (positionals[0] || "").replace(/\/$/, "");
const only = positionals.slice(1);
if (!/^https?:\/\//.test(base)) {
  console.error("usage: node demos.mjs http://HOST:PORT [--server-pid PID] [--block-websocket] [CHECK...]");
  process.exit(2);
}
const blocked = !!opts["block-websocket"];
const tokens = !!opts["token-required"];
// The pages' origin: the server, or the proxy that blocks WebSocket.
const proxy = blocked ? await startProxy(base, { blockWebSocket: true }) : null;
const pages = proxy ? proxy.url : base;
const CHECK_TIMEOUT = 30000;
const run = Date.now().toString(36); // keeps channels of separate runs apart

const log = (...a) => process.stderr.write(`[demos] ${a.join(" ")}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function assertEq(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}: got ${a}, want ${e}`);
}

async function api(path, body) {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

let browser;
const contexts = [];

/** A page in a fresh browser context (its own cookies and storage), with its console on stderr. */
async function open(path, label) {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log(`[${label} ${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`[${label} page error] ${e}`));
  await page.goto(path.startsWith("http") ? path : pages + path);
  return page;
}

const texts = (page) =>
  page.$$eval('#messages [data-testid="message"]', (lis) => lis.map((li) => li.querySelector(".text").textContent));

async function waitMessage(page, text) {
  await page.locator('#messages [data-testid="message"] .text', { hasText: text }).first().waitFor();
}

async function send(page, text) {
  await page.fill("#message-input", text);
  await page.press("#message-input", "Enter");
  // Sent once the input is cleared (publish resolved).
  await page.waitForFunction(() => document.getElementById("message-input").value === "");
}

/**
 * A page running herald.js on its own (at `origin`, default the pages'),
 * subscribed to `channel`; what it sees is in `window.t`. `options` go to
 * the client; `remember`: keep the default sessionStorage.
 */
async function heraldPage(label, channel, options = {}, { origin = pages, remember = false } = {}) {
  const page = await open(`${origin}/`, label);
  await page.evaluate(
    async ([channel, options, remember]) => {
      const { Herald } = await import("/herald.js");
      const t = (window.t = { events: [], pubs: [], recovered: [], gaps: 0, transports: [] });
      if (!remember) options.storage = null;
      const client = (t.client = new Herald(`ws://${location.host}/connection/websocket`, { name: "t", ...options }));
      client.on("connected", (r) => t.events.push({ e: "connected", client: r.client, at: performance.now() }));
      client.on("disconnected", (d) => t.events.push({ e: "disconnected", ...d }));
      client.on("transport", (x) => t.transports.push(x.transport));
      client.subscribe(channel, {
        onPublication: (p) => t.pubs.push({ offset: p.offset, n: p.data.n, recovered: p.recovered }),
        onRecovered: (r) => t.recovered.push(r.publications?.length || 0),
        onGap: () => t.gaps++,
        onSubscribed: () => t.events.push({ e: "subscribed" }),
      });
      t.started = performance.now();
      client.connect();
    },
    [channel, options, remember],
  );
  return page;
}

const subscribed = (page, n) =>
  page.waitForFunction((n) => t.events.filter((e) => e.e === "subscribed").length >= n, n, { timeout: 15000 });

/**
 * herald.js forced onto `transport`, through the blocking proxy: publications
 * before, during and after an outage of the push connection arrive in
 * order, each once, the missed ones by recovery.
 */
function recovery(transport) {
  return async () => {
    const channel = `chat:recovery-${transport}-${run}`;
    const page = await heraldPage(`recovery-${transport}`, channel, {
      transports: [transport],
      minReconnectDelay: 300,
      maxReconnectDelay: 600,
    });
    await subscribed(page, 1);
    for (const n of [1, 2]) await api("/api/publish", { channel, data: { n } });
    await page.waitForFunction(() => t.pubs.length === 2);
    // Longer than a poll's interval, so a poll meets it.
    const cut = proxy.outage(transport === "poll" ? 2500 : 800);
    for (const n of [3, 4, 5]) await api("/api/publish", { channel, data: { n } });
    await subscribed(page, 2);
    await api("/api/publish", { channel, data: { n: 6 } });
    await page.waitForFunction(() => t.pubs.length >= 6);
    await sleep(150);
    const seen = await page.evaluate(() => ({ ...t, client: undefined, transport: t.client.transport, stats: t.client.stats }));
    assertEq(seen.transport, transport, "transport");
    assertEq(
      seen.pubs,
      [1, 2, 3, 4, 5, 6].map((n) => ({ offset: n, n, recovered: n >= 3 && n <= 5 })),
      "publications (in order, each once)",
    );
    assertEq([seen.recovered, seen.gaps], [[3], 0], "recovered 3, no gap");
    const lost = seen.events.find((e) => e.e === "disconnected");
    assert(lost && lost.code === 1006, `a 1006 after the outage: ${JSON.stringify(seen.events)}`);
    return { cut, stats: seen.stats[transport] };
  };
}

/**
 * The QR-code login on `transport`: the code decodes to the phone page,
 * the phone's visit shows as "scanned", the push connection is cut between
 * scan and confirm, and the desktop still logs in, with the one-time code
 * delivered once (by recovery) and spent after one exchange.
 */
function qrLogin(transport) {
  return async () => {
    // A blip needs a proxy to cut: the blocking one, or one of its own.
    const own = proxy ? null : await startProxy(base);
    const px = proxy || own;
    try {
      const desk = await open(`${px.url}/demo/qr-login?transport=${transport}`, `desk-${transport}`);
      await desk.locator('#login-state[data-state="waiting"]').waitFor();
      const img = await desk.evaluate(() => {
        const c = document.getElementById("qr");
        return { w: c.width, h: c.height, data: [...c.getContext("2d").getImageData(0, 0, c.width, c.height).data] };
      });
      const qr = jsQR(Uint8ClampedArray.from(img.data), img.w, img.h);
      assert(qr, "the QR code does not decode");
      const login = await desk.evaluate(() => window.demo.login);
      assertEq(qr.data, `${px.url}/demo/qr-login/phone?id=${login.id}`, "the QR code's text");
      assert(!qr.data.includes(login.channel.slice(3)), "the private channel is not in the QR code");

      const phone = await open(qr.data, `phone-${transport}`);
      await phone.locator('#result[data-state="scanned"]').waitFor();
      await desk.locator('#login-state[data-state="scanned"]').waitFor();

      // The blip: the desktop's push connection is cut and cannot come back
      // for a while; the phone confirms meanwhile.
      px.outage(transport === "poll" ? 2500 : 1500);
      await desk.waitForFunction(() => window.demo.client.state !== "connected", null, { timeout: 5000 });
      await phone.fill("#user", `alice-${transport}`);
      await phone.click("#confirm");
      await phone.locator('#result[data-state="done"]').waitFor();
      await desk.locator('#login-state[data-state="logged-in"]').waitFor({ timeout: 15000 });
      const seen = await desk.evaluate(() => ({
        confirmations: window.demo.confirmations,
        recovered: window.demo.recovered,
        result: window.demo.result,
        code: window.demo.code,
        transport: window.demo.client.transport,
        shown: {
          latency: document.getElementById("stat-latency").textContent,
          requests: Number(document.getElementById("stat-requests").textContent),
          sent: document.getElementById("stat-sent").textContent,
          received: document.getElementById("stat-received").textContent,
        },
      }));
      assertEq(seen.transport, transport, "transport");
      assertEq(seen.result.user, `alice-${transport}`, "logged in as");
      assertEq([seen.confirmations, seen.recovered], [1, true], "the confirmation: once, by recovery");
      assert(/^\d+ ms$/.test(seen.shown.latency), `latency shown: ${seen.shown.latency}`);
      assert(seen.shown.requests >= 1, `requests shown: ${seen.shown.requests}`);
      // The code is spent: a second exchange fails.
      const again = await fetch(`${base}/demo/qr-login/exchange`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: login.id, code: seen.code }),
      });
      assertEq(again.status, 404, "second exchange");
      return { ms_since_confirm: Math.round(seen.result.ms_since_confirm), ...seen.shown };
    } finally {
      await own?.close();
    }
  };
}

const checks = {
  // Two people in one room: presence, messages both ways, and recovery of
  // what one missed while offline, in order and exactly once.
  async chat() {
    const room = `test-${run}`;
    const alice = await open(`/demo/chat?name=Alice&room=${room}`, "alice");
    const bob = await open(`/demo/chat?name=Bob&room=${room}`, "bob");
    for (const p of [alice, bob]) await p.locator('#status[data-state="connected"]').waitFor();

    await alice.locator('#presence [data-name="Bob"]').waitFor();
    await bob.locator('#presence [data-name="Alice"]').waitFor();
    assertEq(await bob.$$eval("#presence [data-name]", (l) => l.map((li) => li.dataset.name)), ["Alice", "Bob"], "Bob's presence");

    await send(alice, "hello from Alice");
    await waitMessage(bob, "hello from Alice");
    await send(bob, "hi Alice, Bob here");
    await waitMessage(alice, "hi Alice, Bob here");

    await bob.click("#toggle-online");
    await bob.locator('#status[data-state="offline"]').waitFor();
    // Offline, the people shown are as last seen: greyed out.
    await bob.locator("#presence.stale").waitFor();
    // Alice sees Bob leave, so he is really gone from the channel.
    await alice.locator('#presence [data-name="Bob"]').waitFor({ state: "detached" });
    const missed = ["missed 1", "missed 2", "missed 3"];
    for (const m of missed) await send(alice, m);
    await waitMessage(alice, "missed 3");
    await sleep(200);
    assert(!(await texts(bob)).includes("missed 1"), "Bob got a message while offline");

    await bob.click("#toggle-online");
    await bob.locator('#status[data-state="connected"]').waitFor();
    await waitMessage(bob, "missed 3");
    await send(alice, "welcome back");
    await waitMessage(bob, "welcome back");
    const got = await texts(bob);
    assertEq(
      got,
      ["hello from Alice", "hi Alice, Bob here", ...missed, "welcome back"],
      "Bob's messages (in order, each once)",
    );
    const flags = await bob.$$eval('#messages [data-testid="message"]', (l) => l.map((li) => li.dataset.recovered));
    assertEq(flags, ["false", "false", "true", "true", "true", "false"], "missed ones came by recovery");
    const offsets = await bob.$$eval('#messages [data-testid="message"]', (l) => l.map((li) => Number(li.dataset.offset)));
    assertEq(offsets, [1, 2, 3, 4, 5, 6], "offsets");
    await alice.locator('#presence [data-name="Bob"]').waitFor();
    assertEq(await bob.locator("#presence.stale").count(), 0, "presence live again");
    // Every message shows the server's time of acceptance.
    const stamped = await bob.$$eval('#messages [data-testid="message"] time', (l) => l.map((t) => t.dataset.server === "true"));
    assert(stamped.length === got.length && stamped.every(Boolean), `server times: ${stamped}`);
    if (!proxy) return { bob: got };

    // WebSocket blocked: both on a fallback; an outage of the push
    // connections loses nothing and repeats nothing.
    const transports = await Promise.all([alice, bob].map((p) => p.evaluate(() => demo.client.transport)));
    assert(transports.every((t) => t && t !== "websocket"), `transports: ${transports}`);
    proxy.outage(800);
    const during = ["during the outage 1", "during the outage 2"];
    for (const text of during) await api("/api/publish", { channel: `chat:${room}`, data: { text } });
    for (const p of [alice, bob]) await waitMessage(p, during[1]);
    await send(alice, "after the outage");
    await waitMessage(bob, "after the outage");
    await sleep(200);
    assertEq(await texts(bob), [...got, ...during, "after the outage"], "Bob's messages after the outage (each once)");
    return { bob: got, transports };
  },

  // A phone-sized window (390 px): nothing wider than the screen, a long
  // word wraps instead of widening the page.
  async chat_phone() {
    const room = `phone-${run}`;
    const page = await open(`/demo/chat?name=Phone&room=${room}`, "phone");
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('#status[data-state="connected"]').waitFor();
    const word = "x".repeat(300);
    await send(page, word);
    await waitMessage(page, word);
    const fit = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      list: [document.getElementById("messages").scrollWidth, document.getElementById("messages").clientWidth],
      input: document.getElementById("message-input").getBoundingClientRect().right,
    }));
    assert(fit.page <= 390, `page ${fit.page} px wide`);
    assert(fit.list[0] <= fit.list[1], `messages overflow: ${fit.list}`);
    assert(fit.input <= 390, `input ends at ${fit.input}`);
    return fit;
  },

  // Prices move with no user action; a backend's publication through the
  // HTTP API shows up on the page.
  async quotes() {
    const page = await open("/demo/quotes", "quotes");
    await page.locator('#status[data-state="connected"]').waitFor();
    const prices = new Set();
    const deadline = Date.now() + 8000;
    let updates = 0;
    while (Date.now() < deadline) {
      const row = await page.$eval("#row-ACME", (tr) => ({ updates: Number(tr.dataset.updates), price: tr.querySelector(".price").textContent }));
      updates = row.updates;
      if (row.price !== "—") prices.add(row.price);
      if (updates >= 3 && prices.size >= 2) break;
      await sleep(100);
    }
    assert(updates >= 3, `ACME updated ${updates} times`);
    assert(prices.size >= 2, `ACME prices seen: ${[...prices]}`);
    for (const s of ["GLOBEX", "INITECH", "UMBRELLA"]) {
      await page.waitForFunction((s) => Number(document.getElementById(`row-${s}`).dataset.updates) >= 1, s);
    }

    const note = `from the backend ${run}`;
    const published = await api("/api/publish", { channel: "quotes:BACKEND", data: { price: 42.5, change: -1.25, text: note } });
    assert(published.delivered >= 1, `delivered to ${published.delivered}`);
    await page.locator("#backend-last", { hasText: note }).waitFor();
    const backend = await page.$eval("#row-BACKEND", (tr) => ({
      price: tr.querySelector(".price").textContent,
      change: tr.querySelector(".change").className,
    }));
    assertEq(backend, { price: "42.50", change: "change down" }, "BACKEND row");
    if (!proxy) return { acme_updates: updates, acme_prices: prices.size };

    const transport = await page.evaluate(() => demo.client.transport);
    assert(transport !== "websocket", `transport: ${transport}`);
    const updated = async () => Number(await page.$eval("#row-BACKEND", (tr) => tr.dataset.updates));
    const before = await updated();
    proxy.outage(800);
    const note2 = `during the outage ${run}`;
    await api("/api/publish", { channel: "quotes:BACKEND", data: { price: 43, change: 0.5, text: note2 } });
    await page.locator("#backend-last", { hasText: note2 }).waitFor();
    await sleep(200);
    assertEq(await updated(), before + 1, "BACKEND updates: the one during the outage, once");
    return { acme_updates: updates, acme_prices: prices.size, transport };
  },

  // Two players: monsters move by server logic; one player's arrow key is
  // seen by the other.
  async game() {
    const p1 = await open("/demo/game?name=One", "one");
    const p2 = await open("/demo/game?name=Two", "two");
    const id1 = await p1.waitForFunction(() => document.getElementById("me").dataset.id).then((h) => h.jsonValue());
    const id2 = await p2.waitForFunction(() => document.getElementById("me").dataset.id).then((h) => h.jsonValue());
    const piece = (id) => `#arena [data-testid="player"][data-id="${id}"]`;
    for (const p of [p1, p2]) {
      await p.locator(piece(id1)).waitFor();
      await p.locator(piece(id2)).waitFor();
    }
    assert(await p1.locator(piece(id1) + ".me").count(), "own piece marked on page one");
    // Spawned apart, with full health, scoring while alive.
    const spawn = await p2.$$eval('#arena [data-testid="player"]', (l) => l.map((el) => [Number(el.dataset.x), Number(el.dataset.y)]));
    const apart = Math.max(Math.abs(spawn[0][0] - spawn[1][0]), Math.abs(spawn[0][1] - spawn[1][1]));
    assert(apart >= 5, `spawned ${apart} squares apart: ${JSON.stringify(spawn)}`);
    await p1.waitForFunction(() => Number(document.getElementById("score").dataset.score) >= 1, null, { timeout: 5000 });
    assert(Number(await p1.$eval("#health", (el) => el.dataset.health)) >= 1, "health shown");
    assert(!(await p2.locator(piece(id1) + ".me").count()), "other's piece not marked on page two");

    // Monster positions and the tick they belong to, read together.
    const world = (p) =>
      p.$eval("#arena", (arena) => ({
        tick: Number(document.getElementById("tick").dataset.tick),
        monsters: [...arena.querySelectorAll('[data-testid="monster"]')].map((m) => `${m.dataset.id}@${m.dataset.x},${m.dataset.y}`).join(" "),
      }));
    const before = await world(p2);
    assert(before.monsters.split(" ").length === 4, `4 monsters: ${before.monsters}`);
    let after = before;
    for (let i = 0; i < 50 && after.monsters === before.monsters; i++) {
      await sleep(100);
      after = await world(p2);
    }
    assert(after.monsters !== before.monsters, `monsters did not move in 5 s: ${before.monsters}`);
    assert(after.tick > before.tick, `ticks advance: ${before.tick} -> ${after.tick}`);

    const pos = (p, id) => p.$eval(piece(id), (el) => [Number(el.dataset.x), Number(el.dataset.y)]);
    const [x, y] = await pos(p2, id1);
    await p1.keyboard.press("ArrowUp");
    await p2.waitForFunction(([sel, y]) => Number(document.querySelector(sel)?.dataset.y) === y - 1, [piece(id1), y]);
    await p1.keyboard.press("ArrowRight");
    await p2.waitForFunction(([sel, x]) => Number(document.querySelector(sel)?.dataset.x) === x + 1, [piece(id1), x]);
    assertEq(await pos(p2, id1), [x + 1, y - 1], "player one as page two sees it");
    assertEq(await pos(p1, id1), [x + 1, y - 1], "player one as page one sees it");
    // And the other way round, by the on-screen button.
    const [x2, y2] = await pos(p1, id2);
    await p2.click("#up");
    await p1.waitForFunction(([sel, y]) => Number(document.querySelector(sel)?.dataset.y) === y - 1, [piece(id2), y2]);
    assertEq(await pos(p1, id2), [x2, y2 - 1], "player two as page one sees it");
    if (!proxy) return { monsters: [before.monsters, after.monsters], ticks: [before.tick, after.tick] };

    // WebSocket blocked: after an outage both pages are back in the game
    // (new sessions, so new players) and the world moves on.
    const transport = await p1.evaluate(() => demo.client.transport);
    assert(transport !== "websocket", `transport: ${transport}`);
    const tick = (await world(p2)).tick;
    proxy.outage(800);
    await p2.waitForFunction((t) => Number(document.getElementById("tick").dataset.tick) > t + 5, tick, { timeout: 10000 });
    const back = await p1
      .waitForFunction((old) => {
        const id = document.getElementById("me").dataset.id;
        return id && id !== old && id;
      }, id1, { timeout: 10000 })
      .then((h) => h.jsonValue());
    await p2.locator(piece(back)).waitFor();
    return { monsters: [before.monsters, after.monsters], ticks: [before.tick, after.tick], transport };
  },

  // herald.js on its own in a page: the server kicks the connection (POST
  // /api/disconnect, close 4002); the client reconnects with backoff,
  // resubscribes with recovery and gets what was published meanwhile, in
  // order, exactly once.
  async reconnect() {
    const page = await open("/", "reconnect");
    const channel = `chat:reconnect-${run}`;
    await page.evaluate(async (channel) => {
      const { Herald } = await import("/herald.js");
      const t = (window.t = { events: [], pubs: [], recovered: [], gaps: 0 });
      // 1 s minimum delay: room for the test to publish while it is away.
      const client = (t.client = new Herald(`ws://${location.host}/connection/websocket`, { name: "rc", minReconnectDelay: 1000 }));
      client.on("connected", (r) => t.events.push({ e: "connected", client: r.client, ping: r.ping }));
      client.on("disconnected", (d) => t.events.push({ e: "disconnected", ...d }));
      client.subscribe(channel, {
        onPublication: (p) => t.pubs.push({ offset: p.offset, n: p.data.n, recovered: p.recovered }),
        onRecovered: (r) => t.recovered.push(r.publications?.length || 0),
        onGap: () => t.gaps++,
        onSubscribed: () => t.events.push({ e: "subscribed" }),
      });
      client.connect();
    }, channel);
    await page.waitForFunction(() => t.events.some((e) => e.e === "subscribed"));
    const first = await page.evaluate(() => t.client.clientId);
    for (const n of [1, 2]) await api("/api/publish", { channel, data: { n } });
    await page.waitForFunction(() => t.pubs.length === 2);

    await api("/api/disconnect", { client: first, reason: "test" });
    for (const n of [3, 4, 5]) await api("/api/publish", { channel, data: { n } });
    await page.waitForFunction(() => t.events.filter((e) => e.e === "subscribed").length === 2);
    await api("/api/publish", { channel, data: { n: 6 } });
    await page.waitForFunction(() => t.pubs.length >= 6);
    await sleep(100);
    const seen = await page.evaluate(() => ({ ...t, client: t.client.clientId }));
    const kicked = seen.events.find((e) => e.e === "disconnected");
    assertEq([kicked.code, kicked.reason], [4002, "test"], "close code and reason");
    assert(kicked.reconnectIn >= 1000 && kicked.reconnectIn <= 2000, `reconnectIn ${kicked.reconnectIn}`);
    assert(seen.client !== first, `a new client id: ${first} -> ${seen.client}`);
    assertEq(seen.events.map((e) => e.e), ["connected", "subscribed", "disconnected", "connected", "subscribed"], "events");
    assertEq(
      seen.pubs,
      [1, 2, 3, 4, 5, 6].map((n) => ({ offset: n, n, recovered: n >= 3 && n <= 5 })),
      "publications",
    );
    assertEq([seen.recovered, seen.gaps], [[3], 0], "recovered 3, no gap");

    // Error replies reject with the server's code.
    const errors = await page.evaluate(async () => {
      const c = t.client;
      const code = (p) => p.then(() => "ok", (e) => e.code);
      const refused = new Promise((resolve) => c.subscribe("nope:x", { onError: (e) => resolve(e.code) }));
      return {
        publish: await code(c.publish("quotes:ACME", { price: 1 })),
        presence: await code(c.presence("quotes:ACME")),
        subscribe: await refused,
        history: await code(c.history("chat:empty", { limit: 1 })),
      };
    });
    assertEq(errors, { publish: 103, presence: 103, subscribe: 102, history: "ok" }, "error codes");
    return { clients: [first, seen.client], reconnect_in_ms: Math.round(kicked.reconnectIn) };
  },

  // The chat page forced onto each HTTP transport (`?transport=`) talks
  // with one on the default fallback: messages both ways, presence.
  async chat_transports() {
    const ms = {};
    for (const transport of ["sse", "longpoll", "poll"]) {
      const room = `x-${transport}-${run}`;
      const a = await open(`/demo/chat?name=Ann&room=${room}`, `ann-${transport}`);
      const b = await open(`/demo/chat?name=Ben&room=${room}&transport=${transport}`, `ben-${transport}`);
      for (const p of [a, b]) await p.locator('#status[data-state="connected"]').waitFor();
      assertEq(await b.evaluate(() => demo.client.transport), transport, "forced transport");
      const t0 = Date.now();
      await send(a, `to Ben over ${transport}`);
      await waitMessage(b, `to Ben over ${transport}`);
      ms[transport] = Date.now() - t0;
      await send(b, `to Ann over ${transport}`);
      await waitMessage(a, `to Ann over ${transport}`);
      await b.locator('#presence [data-name="Ann"]').waitFor();
      await a.locator('#presence [data-name="Ben"]').waitFor();
      assertEq(await texts(b), [`to Ben over ${transport}`, `to Ann over ${transport}`], "Ben's messages");
    }
    return { delivery_ms: ms };
  },

  // WebSocket refused by the proxy: the default client falls back within
  // ~3 s, remembers the transport for the browser session (a second client
  // does not try WebSocket again), and says which it uses.
  async fallback() {
    const channel = `chat:fallback-${run}`;
    const refused = proxy.refused;
    const page = await heraldPage("fallback", channel, {}, { remember: true });
    await subscribed(page, 1);
    const seen = await page.evaluate(() => ({
      transport: t.client.transport,
      transports: t.transports,
      ms: t.events.find((e) => e.e === "connected").at - t.started,
      remembered: sessionStorage.getItem(`herald.transport ws://${location.host}/connection/websocket`),
    }));
    assert(proxy.refused > refused, "WebSocket was tried first");
    assertEq(seen.transport, "stream", "the first fallback");
    assertEq(seen.transports, ["stream"], "transport events");
    assert(seen.ms < 3000, `connected after ${seen.ms} ms`);
    assertEq(seen.remembered, "stream", "remembered");
    const refusedBefore = proxy.refused;
    const second = await page.evaluate(async () => {
      const { Herald } = await import("/herald.js");
      const c = new Herald(`ws://${location.host}/connection/websocket`, { name: "second" });
      await new Promise((resolve) => {
        c.on("connected", resolve);
        c.connect();
      });
      c.disconnect();
      return c.transport;
    });
    assertEq([second, proxy.refused - refusedBefore], ["stream", 0], "second client: the remembered transport, no upgrade");
    await api("/api/publish", { channel, data: { n: 1 } });
    await page.waitForFunction(() => t.pubs.length === 1);
    return { ms: Math.round(seen.ms) };
  },

  recovery_stream: recovery("stream"),
  recovery_sse: recovery("sse"),
  recovery_longpoll: recovery("longpoll"),
  recovery_poll: recovery("poll"),

  qr_websocket: qrLogin("websocket"),
  qr_stream: qrLogin("stream"),
  qr_sse: qrLogin("sse"),
  qr_longpoll: qrLogin("longpoll"),
  qr_poll: qrLogin("poll"),

  // On a fallback because WebSocket was blocked, the client keeps trying
  // WebSocket; once it gets through, it switches, and loses nothing.
  async websocket_comeback() {
    const px = await startProxy(base, { blockWebSocket: true });
    try {
      const channel = `chat:comeback-${run}`;
      const page = await heraldPage("comeback", channel, { websocketRetry: 300 }, { origin: px.url });
      await subscribed(page, 1);
      assertEq(await page.evaluate(() => t.client.transport), "stream", "fallback first");
      await api("/api/publish", { channel, data: { n: 1 } });
      await page.waitForFunction(() => t.pubs.length === 1);
      px.blockWebSocket = false;
      await page.waitForFunction(() => t.client.transport === "websocket" && t.client.state === "connected", null, { timeout: 10000 });
      await subscribed(page, 2);
      await api("/api/publish", { channel, data: { n: 2 } });
      await page.waitForFunction(() => t.pubs.length >= 2);
      await sleep(100);
      const seen = await page.evaluate(() => ({ pubs: t.pubs, transports: t.transports }));
      assertEq(seen.transports, ["stream", "websocket"], "transport events");
      assertEq(seen.pubs.map((p) => p.n), [1, 2], "publications, each once");
      return { transports: seen.transports };
    } finally {
      await px.close();
    }
  },

  // A server that wants tokens: the chat page, opened without one, says
  // so plainly instead of reconnecting for ever.
  async token_required() {
    const page = await open(`/demo/chat?name=NoToken&room=t-${run}`, "token");
    await page.locator("#notice", { hasText: "requires a token" }).waitFor();
    const shown = await page.$eval("#notice", (el) => ({ text: el.textContent, kind: el.dataset.kind }));
    assertEq(shown.kind, "error", "shown as an error");
    const state = await page.evaluate(() => demo.client.state);
    assertEq(state, "disconnected", "no reconnect loop");
    return shown;
  },

  // Runs last, only with --server-pid: the server's graceful shutdown, as
  // the client sees it. Two connections, so the drain spreads them out.
  async shutdown() {
    const page = await open("/", "shutdown");
    await page.evaluate(async () => {
      const { Herald } = await import("/herald.js");
      window.closes = [];
      window.clients = [1, 2].map((i) => {
        const c = new Herald(`ws://${location.host}/connection/websocket`, { name: `drain${i}` });
        c.on("disconnected", (d) => window.closes.push({ i, ...d }));
        c.subscribe("chat:drain");
        c.connect();
        return c;
      });
    });
    await page.waitForFunction(() => clients.every((c) => c.state === "connected"));
    process.kill(Number(opts["server-pid"]), "SIGTERM");
    await page.waitForFunction(() => [1, 2].every((i) => closes.some((d) => d.i === i)), null, { timeout: 15000 });
    const firsts = await page.evaluate(() => [1, 2].map((i) => closes.find((d) => d.i === i)));
    await page.evaluate(() => clients.forEach((c) => c.disconnect()));
    const hints = firsts.map((d) => {
      assertEq(d.code, 1001, "close code");
      const m = /^shutdown; retry in (\d+) ms$/.exec(d.reason);
      assert(m, `reason ${JSON.stringify(d.reason)}`);
      assert(d.reconnectIn >= Number(m[1]), `reconnectIn ${d.reconnectIn} obeys the hint ${m[1]}`);
      return Number(m[1]);
    });
    assert(Math.max(...hints) > Math.min(...hints), `hints spread out: ${hints}`);
    return { hints };
  },
};

// ----- runner ---------------------------------------------------------------

const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
try {
  // Playwright gives the browser a fresh temporary --user-data-dir and
  // removes it on close.
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args, timeout: 30000 });
} catch (e) {
  console.log(JSON.stringify({ check: "launch", ok: false, error: String(e) }));
  process.exit(2);
}

// Each mode's checks, in order, and the prefix of their names.
const prefix = tokens ? "tokens" : blocked ? "blocked" : "demos";
const CHECKS = tokens
  ? ["token_required", "qr_websocket", "qr_sse"]
  : blocked
  ? ["chat", "chat_transports", "quotes", "game", "fallback", "recovery_stream", "recovery_sse", "recovery_longpoll", "recovery_poll",
     "qr_stream", "qr_sse", "qr_longpoll", "qr_poll"]
  : ["chat", "chat_phone", "quotes", "game", "reconnect", "qr_websocket", "websocket_comeback", "shutdown"];

let failed = 0;
for (const name of CHECKS) {
  const fn = checks[name];
  if (only.length && !only.includes(name)) continue;
  if (name === "shutdown" && !opts["server-pid"]) continue;
  const t0 = Date.now();
  let timer;
  try {
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT} ms`)), CHECK_TIMEOUT);
    });
    const detail = await Promise.race([fn(), timeout]);
    console.log(JSON.stringify({ check: `${prefix}/${name}`, ok: true, ms: Date.now() - t0, ...detail }));
  } catch (e) {
    failed++;
    console.log(JSON.stringify({ check: `${prefix}/${name}`, ok: false, ms: Date.now() - t0, error: String(e?.stack || e) }));
  } finally {
    clearTimeout(timer);
    // Closing the contexts closes their sockets: the next check starts clean.
    await Promise.all(contexts.splice(0).map((c) => c.close().catch(() => {})));
  }
}
await browser.close();
await proxy?.close();
process.exit(failed ? 1 : 0);
