#!/usr/bin/env node
// herald.js in isolation: the reconnect, recovery and heartbeat logic
// against a scripted fake server (no network, no browser).
//
//   node web/tests/client.mjs
//
// Prints one JSON line per check: {"check": NAME, "ok": true|false, ...};
// exits 1 if any failed. crates/herald-cli/tests/browser_demos.rs runs it.
import { Herald, HeraldError, reconnectDelay } from "../herald.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `ms` pass. */
async function until(fn, ms = 2000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function assertEq(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}: got ${a}, want ${e}`);
}

/**
 * A scripted server. Each socket the client opens is a FakeSocket;
 * commands go to `handle`, which answers like herald serve unless a test
 * overrides `onSubscribe` / `silent`.
 */
class FakeServer {
  constructor() {
    this.sockets = [];
    this.commands = [];
    this.ping = 25;
    this.silent = false;
    this.nextClient = 1;
    /** Seconds until the token "expires", sent in connect and refresh results. */
    this.ttl = undefined;
    this.onSubscribe = (_params) => ({ epoch: "e1", offset: 0 });
  }

  get WebSocket() {
    const server = this;
    return class FakeSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.closedWith = null;
        server.sockets.push(this);
        setTimeout(() => {
          if (this.readyState !== 0) return;
          this.readyState = 1;
          this.onopen?.();
        }, 1);
      }

      send(text) {
        const cmd = JSON.parse(text);
        server.commands.push({ socket: this, cmd });
        if (!server.silent) setTimeout(() => server.handle(this, cmd), 1);
      }

      close(code) {
        this.closedWith = code ?? 1005;
        this.readyState = 3;
      }

      // Server side.
      reply(id, result) {
        this.onmessage?.({ data: JSON.stringify({ id, result }) });
      }

      push(push) {
        this.onmessage?.({ data: JSON.stringify({ push }) });
      }

      serverClose(code, reason = "") {
        this.readyState = 3;
        this.onclose?.({ code, reason });
      }
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }

  handle(socket, cmd) {
    if (socket.readyState !== 1) return;
    if (cmd.connect) {
      const expiry = this.ttl === undefined ? {} : { expires: 1, ttl: this.ttl };
      socket.reply(cmd.id, { client: String(this.nextClient++), version: "test", ping: this.ping, ...expiry });
    } else if (cmd.refresh) {
      socket.reply(cmd.id, { expires: 2, ttl: this.ttl });
    } else if (cmd.subscribe) {
      socket.reply(cmd.id, this.onSubscribe(cmd.subscribe));
    } else if (cmd.publish && cmd.publish.channel.startsWith("quotes:")) {
      socket.onmessage?.({
        data: JSON.stringify({ id: cmd.id, error: { code: 103, message: "permission denied" } }),
      });
    } else if (cmd.publish && cmd.publish.channel === "black:hole") {
      // never answered
    } else {
      socket.reply(cmd.id, {});
    }
  }

  subscribes() {
    return this.commands.filter((c) => c.cmd.subscribe).map((c) => c.cmd.subscribe);
  }
}

/** A client on a fresh fake server, with fast timings. */
function setup(options = {}) {
  const server = new FakeServer();
  const client = new Herald("ws://fake/connection/websocket", {
    name: "tester",
    minReconnectDelay: 20,
    maxReconnectDelay: 200,
    WebSocket: server.WebSocket,
    // The fallbacks would reach for the network: this fake speaks WebSocket only.
    transports: ["websocket"],
    storage: null,
    ...options,
  });
  const events = [];
  for (const e of ["connected", "disconnected", "state", "error"]) {
    client.on(e, (arg) => events.push({ e, arg }));
  }
  return { server, client, events };
}

const pub = (offset, text) => ({ offset, data: { text } });

const checks = {
  // The close code table of docs/protocol.md.
  close_code_table() {
    const o = { minReconnectDelay: 250, maxReconnectDelay: 20000 };
    for (const code of [1003, 1009, 4100, 4101, 4200]) {
      assertEq(reconnectDelay(code, "", 0, o), null, `no reconnect after ${code}`);
    }
    assert(reconnectDelay(4100, "", 0, { ...o, getToken: () => "t" }) !== null, "4100 retries with getToken");
    // Token expired: the same token would be refused.
    assertEq(reconnectDelay(4005, "token expired", 0, o), null, "no reconnect after 4005 without getToken");
    const fresh = reconnectDelay(4005, "token expired", 0, { ...o, getToken: () => "t" });
    assert(fresh >= 250 && fresh <= 500, `4005 retries at once with getToken: ${fresh}`);
    for (const code of [1000, 1006, 1011, 4001, 4002, 4003, 4004]) {
      for (let i = 0; i < 50; i++) {
        const d = reconnectDelay(code, "", 0, o);
        assert(d >= 250 && d <= 500, `first delay after ${code} in [250, 500]: ${d}`);
      }
    }
    const late = Array.from({ length: 200 }, () => reconnectDelay(1006, "", 30, o));
    assert(Math.max(...late) <= 20000 && Math.min(...late) >= 250, "capped at 20 s");
    assert(Math.max(...late) > 5000, "full jitter reaches high");
    assert(Math.min(...late) < 5000, "full jitter reaches low");
    const hinted = reconnectDelay(1001, "shutdown; retry in 1500 ms", 7, o);
    assert(hinted >= 1500 && hinted <= 1750, `1001 obeys the hint: ${hinted}`);
    const unhinted = reconnectDelay(1001, "going away", 0, o);
    assert(unhinted >= 250 && unhinted <= 500, `1001 without hint backs off: ${unhinted}`);
  },

  async connect_sends_name_and_token() {
    const { server, client, events } = setup({ token: "jwt" });
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    assertEq(server.commands[0].cmd, { id: 1, connect: { token: "jwt", name: "tester" } }, "connect command");
    assertEq(client.clientId, "1", "client id");
    assertEq(events.filter((x) => x.e === "state").map((x) => x.arg), ["connecting", "connected"], "states");
    client.disconnect();
  },

  async get_token_called_per_connect() {
    let n = 0;
    const { server, client } = setup({ getToken: async () => `t${++n}` });
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    server.last.serverClose(4100, "invalid token");
    await until(() => client.state === "connected" && server.sockets.length === 2, 1000, "reconnect");
    assertEq(server.commands.filter((c) => c.cmd.connect).map((c) => c.cmd.connect.token), ["t1", "t2"], "tokens");
    client.disconnect();
  },

  async refreshes_token_before_expiry() {
    let n = 0;
    const { server, client, events } = setup({ getToken: async () => `t${++n}` });
    // 0.3 s to live: refresh half way, and again after each refresh.
    server.ttl = 0.3;
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    const refreshes = () => server.commands.filter((c) => c.cmd.refresh).map((c) => c.cmd.refresh.token);
    await until(() => refreshes().length >= 2, 2000, "two refreshes");
    assertEq(refreshes().slice(0, 2), ["t2", "t3"], "a fresh token each time");
    assertEq(server.sockets.length, 1, "on the same connection");
    const first = server.commands.find((c) => c.cmd.refresh);
    assertEq(first.socket, server.sockets[0], "sent on the live socket");
    client.disconnect();
    const after = refreshes().length;
    await sleep(400);
    assertEq(refreshes().length, after, "no refresh after disconnect()");
    assert(!events.some((x) => x.e === "error"), "no errors");

    // Without getToken there is nothing to refresh with.
    const quiet = setup({ token: "static" });
    quiet.server.ttl = 0.1;
    quiet.client.connect();
    await until(() => quiet.client.state === "connected", 1000, "connected");
    await sleep(200);
    assertEq(quiet.server.commands.filter((c) => c.cmd.refresh).length, 0, "no refresh without getToken");
    quiet.client.disconnect();
  },

  async reconnects_with_fresh_token_after_4005() {
    let n = 0;
    const { server, client, events } = setup({ getToken: () => `t${++n}` });
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    server.last.serverClose(4005, "token expired");
    await until(() => client.state === "connected" && server.sockets.length === 2, 1000, "reconnect");
    assertEq(server.commands.filter((c) => c.cmd.connect).map((c) => c.cmd.connect.token), ["t1", "t2"], "tokens");
    const d = events.find((x) => x.e === "disconnected").arg;
    assertEq(d.code, 4005, "disconnected event");
    client.disconnect();

    // A static token cannot be renewed: no reconnect.
    const stuck = setup({ token: "static" });
    stuck.client.connect();
    await until(() => stuck.client.state === "connected", 1000, "connected");
    stuck.server.last.serverClose(4005, "token expired");
    await until(() => stuck.events.some((x) => x.e === "disconnected"), 1000, "disconnected");
    assertEq(stuck.events.find((x) => x.e === "disconnected").arg.reconnectIn, null, "reconnectIn null");
    await sleep(100);
    assertEq(stuck.server.sockets.length, 1, "no new socket");
  },

  async error_reply_and_timeout() {
    const { client } = setup({ timeout: 100 });
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    const denied = await client.publish("quotes:ACME", {}).catch((e) => e);
    assert(denied instanceof HeraldError, "HeraldError");
    assertEq([denied.code, denied.reason], [103, "permission denied"], "error reply");
    const slow = await client.publish("black:hole", {}).catch((e) => e);
    assertEq(slow.code, "timeout", "timeout");
    client.disconnect();
    const offline = await client.publish("chat:x", {}).catch((e) => e);
    assertEq(offline.code, "disconnected", "rejected while disconnected");
  },

  async pending_requests_rejected_on_close() {
    const { server, client } = setup();
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    const p = client.publish("black:hole", {}).catch((e) => e);
    server.last.serverClose(1006);
    assertEq((await p).code, "disconnected", "pending rejected");
    client.disconnect();
  },

  async no_reconnect_at_or_above_4100() {
    for (const code of [4100, 4101, 1003, 1009]) {
      const { server, client, events } = setup();
      client.connect();
      await until(() => client.state === "connected", 1000, "connected");
      server.last.serverClose(code, "no");
      await until(() => events.some((x) => x.e === "disconnected"), 2000, `disconnected after ${code}`);
      // Time for a reconnect that must not come.
      await sleep(100);
      assertEq(server.sockets.length, 1, `no new socket after ${code}`);
      const d = events.find((x) => x.e === "disconnected").arg;
      assertEq([d.code, d.reconnectIn], [code, null], `disconnected event after ${code}`);
      assertEq(client.state, "disconnected", "state");
    }
  },

  async shutdown_hint_delays_reconnect() {
    const { server, client, events } = setup();
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    const t0 = Date.now();
    server.last.serverClose(1001, "shutdown; retry in 300 ms");
    await until(() => server.sockets.length === 2, 2000, "second socket");
    const waited = Date.now() - t0;
    assert(waited >= 290, `waited ${waited} ms for a 300 ms hint`);
    const d = events.find((x) => x.e === "disconnected").arg;
    assert(d.reconnectIn >= 300, `reconnectIn ${d.reconnectIn}`);
    client.disconnect();
  },

  async backoff_grows_while_failing() {
    const { server, client, events } = setup({ minReconnectDelay: 10, maxReconnectDelay: 10000 });
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    // Every next socket fails at once.
    const open = server.WebSocket;
    client.options.WebSocket = class extends open {
      constructor(url) {
        super(url);
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code: 1006, reason: "" }), 1);
      }
    };
    server.last.serverClose(1006);
    await until(() => events.filter((x) => x.e === "disconnected").length >= 6, 3000, "6 failures");
    client.disconnect();
    const delays = events.filter((x) => x.e === "disconnected").map((x) => x.arg.reconnectIn);
    // Attempt i waits at most 10 * 2^(i+1) ms.
    delays.slice(0, 6).forEach((d, i) => assert(d >= 10 && d <= 10 * 2 ** (i + 1), `delay ${i}: ${d}`));
    assertEq(client.state, "disconnected", "stays down after disconnect()");
  },

  async resubscribe_recovers_in_order_exactly_once() {
    const { server, client } = setup();
    const seen = [];
    let recovered = 0;
    client.subscribe("chat:r", {
      onPublication: (p) => seen.push([p.offset, p.data.text, p.recovered]),
      onRecovered: () => recovered++,
    });
    server.onSubscribe = () => ({ epoch: "e1", offset: 2 });
    client.connect();
    await until(() => client.subscriptions.get("chat:r").state === "subscribed", 1000, "subscribed");
    const s1 = server.last;
    s1.push({ channel: "chat:r", epoch: "e1", pub: pub(3, "c") });
    s1.push({ channel: "chat:r", epoch: "e1", pub: pub(3, "c") }); // a duplicate
    s1.push({ channel: "chat:other", epoch: "e1", pub: pub(9, "not ours") });
    server.onSubscribe = (p) => {
      assertEq(p, { channel: "chat:r", recover: true, epoch: "e1", offset: 3 }, "recover params");
      return { epoch: "e1", offset: 6, recovered: true, publications: [pub(3, "c"), pub(4, "d"), pub(5, "e"), pub(6, "f")] };
    };
    s1.serverClose(4002, "disconnected");
    await until(() => server.sockets.length === 2 && client.subscriptions.get("chat:r").state === "subscribed", 2000, "resubscribed");
    const s2 = server.last;
    s2.push({ channel: "chat:r", epoch: "e1", pub: pub(6, "f") }); // overlaps the recovery
    s2.push({ channel: "chat:r", epoch: "e1", pub: pub(7, "g") });
    assertEq(seen, [[3, "c", false], [4, "d", true], [5, "e", true], [6, "f", true], [7, "g", false]], "delivered");
    assertEq(recovered, 1, "onRecovered once");
    client.disconnect();
  },

  async gap_raises_on_gap() {
    const { server, client } = setup();
    const seen = [];
    const gaps = [];
    client.subscribe("chat:g", {
      onPublication: (p) => seen.push(p.offset),
      onGap: (r) => gaps.push(r),
    });
    server.onSubscribe = () => ({ epoch: "e1", offset: 5 });
    client.connect();
    await until(() => client.subscriptions.get("chat:g").state === "subscribed", 1000, "subscribed");
    server.onSubscribe = () => ({ epoch: "e2", offset: 2, recovered: false });
    server.last.serverClose(1006);
    await until(() => gaps.length === 1, 2000, "onGap");
    assertEq(gaps[0].epoch, "e2", "gap result");
    // Continues from the new epoch's top.
    server.last.push({ channel: "chat:g", epoch: "e2", pub: pub(2, "old") });
    server.last.push({ channel: "chat:g", epoch: "e2", pub: pub(3, "new") });
    assertEq(seen, [3], "continues after the new top");
    const sub = client.subscriptions.get("chat:g");
    assertEq([sub.epoch, sub.offset], ["e2", 3], "position");
    client.disconnect();
  },

  async heartbeat_detects_dead_connection() {
    const { server, client, events } = setup({ pingGrace: 100 });
    server.ping = 0.1; // seconds
    client.connect();
    await until(() => client.state === "connected", 1000, "connected");
    // Two answered pings, however late a busy machine runs the timers
    // (a fixed 350 ms sleep saw only one under a loaded CI).
    await until(() => server.commands.filter((c) => c.cmd.ping).length >= 2, 3000, "two pings sent");
    assertEq(server.sockets.length, 1, "alive while pings are answered");
    const dead = server.last;
    server.silent = true;
    const t0 = Date.now();
    await until(() => events.some((x) => x.e === "disconnected"), 3000, "heartbeat timeout");
    const took = Date.now() - t0;
    // About ping + grace (200 ms) after the last answer; slack for a busy machine.
    assert(took <= 2000, `detected in ${took} ms (ping 100 + grace 100)`);
    assertEq(events.find((x) => x.e === "disconnected").arg.reason, "heartbeat timeout", "reason");
    assertEq(dead.closedWith, 1000, "closed the dead socket");
    server.silent = false;
    await until(() => client.state === "connected" && server.sockets.length === 2, 1000, "reconnected");
    client.disconnect();
  },

  async unsubscribe_and_server_refusal() {
    const { server, client } = setup();
    const errors = [];
    server.onSubscribe = (p) => (p.channel === "nope:x" ? null : { epoch: "e", offset: 0 });
    const handle = server.handle.bind(server);
    server.handle = (socket, cmd) => {
      if (cmd.subscribe?.channel === "nope:x") {
        socket.onmessage?.({ data: JSON.stringify({ id: cmd.id, error: { code: 102, message: "unknown channel" } }) });
      } else handle(socket, cmd);
    };
    const bad = client.subscribe("nope:x", { onError: (e) => errors.push(e.code) });
    const good = client.subscribe("chat:u");
    client.connect();
    await until(() => errors.length === 1 && good.state === "subscribed", 1000, "replies");
    assertEq(errors, [102], "onError");
    assert(!client.subscriptions.has("nope:x") && bad.state === "unsubscribed", "refused subscription dropped");
    good.unsubscribe();
    await until(() => server.commands.some((c) => c.cmd.unsubscribe), 1000, "unsubscribe sent");
    assert(!client.subscriptions.has("chat:u"), "removed");
    server.last.serverClose(1006);
    await until(() => client.state === "connected" && server.sockets.length === 2, 1000, "reconnected");
    await sleep(20);
    assertEq(server.subscribes().filter((s) => s.channel === "chat:u").length, 1, "not resubscribed");
    client.disconnect();
  },

  async batched_presence_calls_on_join_and_on_leave() {
    const { server, client } = setup();
    const seen = [];
    client.subscribe("chat:big", {
      onJoin: (i) => seen.push(`+${i.client}`),
      onLeave: (i) => seen.push(`-${i.client}`),
    });
    client.connect();
    await until(() => client.subscriptions.get("chat:big")?.state === "subscribed", 1000, "subscribed");
    server.last.push({ channel: "chat:big", join: { client: "7", user: "" } });
    // A batch holds this connection's own join (client "1"): not reported.
    server.last.push({
      channel: "chat:big",
      presence: {
        join: [{ client: "1", user: "" }, { client: "8", user: "" }],
        leave: [{ client: "7", user: "" }],
      },
    });
    await until(() => seen.length === 3, 1000, "three presence events");
    assertEq(seen, ["+7", "+8", "-7"], "joins then leaves, own join skipped");
    client.disconnect();
  },

  async disconnect_then_connect_recovers() {
    const { server, client, events } = setup();
    client.subscribe("chat:t");
    server.onSubscribe = () => ({ epoch: "e1", offset: 4 });
    client.connect();
    await until(() => client.subscriptions.get("chat:t").state === "subscribed", 1000, "subscribed");
    client.disconnect();
    await sleep(60);
    assertEq(server.sockets.length, 1, "no reconnect after disconnect()");
    assertEq(events.filter((x) => x.e === "disconnected").map((x) => x.arg.reconnectIn), [null], "reconnectIn null");
    server.onSubscribe = () => ({ epoch: "e1", offset: 4, recovered: true });
    client.connect();
    await until(() => client.subscriptions.get("chat:t").state === "subscribed", 1000, "resubscribed");
    assertEq(server.subscribes()[1], { channel: "chat:t", recover: true, epoch: "e1", offset: 4 }, "recover");
    client.disconnect();
  },
};

let failed = 0;
const only = process.argv[2];
for (const [name, fn] of Object.entries(checks)) {
  if (only && name !== only) continue;
  const t0 = Date.now();
  try {
    await fn();
    console.log(JSON.stringify({ check: `client/${name}`, ok: true, ms: Date.now() - t0 }));
  } catch (e) {
    failed++;
    console.log(JSON.stringify({ check: `client/${name}`, ok: false, ms: Date.now() - t0, error: String(e?.stack || e) }));
  }
}
process.exit(failed ? 1 : 0);
