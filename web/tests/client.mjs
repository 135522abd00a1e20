#!/usr/bin/env node
// herald.js in isolation: the reconnect, recovery, heartbeat and
// transport fallback logic against a scripted fake server and a fake fetch
// (no network, no browser).
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

/** A fetch Response as herald.js reads it. */
function response(status, body) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return { ok: status >= 200 && status < 300, status, text: async () => text, json: async () => JSON.parse(text) };
}

/**
 * A scripted HTTP side: `POST /connection/poll` answered by `onPoll(body)`
 * (a {status, body} or a promise of one), `POST /connection/stream` by a
 * body whose lines the test writes (`streams[i].write(line)`, `.end()`),
 * `POST /connection/send` recorded.
 */
class FakeHttp {
  constructor() {
    this.polls = [];
    this.sends = [];
    this.streams = [];
    this.onPoll = (body) => ({ status: 200, body: { client: "p1", channels: positions(body), messages: [] } });
  }

  get fetch() {
    return async (url, init) => {
      const path = new URL(url).pathname;
      if (path === "/connection/poll") {
        const body = JSON.parse(init.body);
        this.polls.push(body);
        const { status, body: answer } = await this.onPoll(body, init);
        return response(status, answer);
      }
      if (path === "/connection/send") {
        this.sends.push(JSON.parse(init.body));
        return response(202, {});
      }
      if (path === "/connection/stream") {
        const queue = [];
        let wake = null;
        const stream = {
          connect: JSON.parse(init.body),
          write: (line) => {
            queue.push(new TextEncoder().encode(line + "\n"));
            wake?.();
          },
          end: () => {
            queue.push(null);
            wake?.();
          },
        };
        this.streams.push(stream);
        const reader = {
          read: async () => {
            while (!queue.length) await new Promise((r) => (wake = r));
            const value = queue.shift();
            return value === null ? { done: true } : { value, done: false };
          },
        };
        return { ok: true, status: 200, body: { getReader: () => reader } };
      }
      throw new TypeError("fetch failed");
    };
  }
}

/** Every channel of a poll at offset 0 of epoch "e1", or where it asked from. */
function positions(body) {
  return Object.fromEntries(Object.entries(body.channels).map(([c, p]) => [c, { epoch: "e1", offset: p.offset ?? 0 }]));
}

/** A WebSocket that can never connect: a proxy's 403 to the upgrade. */
class RefusedSocket {
  static opened = 0;
  constructor() {
    RefusedSocket.opened++;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      this.onclose?.({ code: 1006, reason: "" });
    }, 1);
  }
  send() {}
  close() {}
}

/** sessionStorage, in memory. */
class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.get(k) ?? null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
}

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
  // WebSocket refused: HTTP streaming next, at once; the transport is
  // remembered, and a second client of the same URL starts with it.
  async falls_back_and_remembers() {
    const http = new FakeHttp();
    const storage = new MemoryStorage();
    const options = { WebSocket: RefusedSocket, fetch: http.fetch, storage, websocketRetry: 0, minReconnectDelay: 20 };
    const client = new Herald("ws://fake/connection/websocket", options);
    const events = [];
    client.on("transport", (t) => events.push(t));
    client.on("disconnected", (d) => events.push(d.reconnectIn));
    client.subscribe("chat:a");
    RefusedSocket.opened = 0;
    client.connect();
    await until(() => http.streams.length === 1, 1000, "a stream");
    const stream = http.streams[0];
    assertEq(stream.connect.connect, {}, "the connect command is the stream's body");
    stream.write(JSON.stringify({ id: stream.connect.id, result: { client: "7", version: "t", ping: 0, session: "S1" } }));
    await until(() => client.state === "connected", 1000, "connected");
    assertEq([client.transport, events], ["stream", [0, { transport: "stream", previous: null }]], "fell back at once");
    assertEq(storage.getItem("herald.transport ws://fake/connection/websocket"), "stream", "remembered");
    // The subscribe goes up as a POST with the session token.
    await until(() => http.sends.length === 1, 1000, "a send");
    assertEq(http.sends[0].session, "S1", "session token");
    assertEq(http.sends[0].commands.map((c) => Object.keys(c)[1]), ["subscribe"], "commands");
    // The server's goodbye closes with its code.
    stream.write(JSON.stringify({ disconnect: { code: 4001, reason: "slow consumer" } }));
    await until(() => events.filter((e) => typeof e === "number").length === 2, 1000, "disconnected");
    assert(events.at(-1) > 0, `reconnects after 4001: ${events.at(-1)}`);
    client.disconnect();

    const second = new Herald("ws://fake/connection/websocket", options);
    RefusedSocket.opened = 0;
    second.connect();
    await until(() => http.streams.length >= 2, 1000, "second client's stream");
    assertEq(RefusedSocket.opened, 0, "no WebSocket tried");
    second.disconnect();
  },

  async stream_disconnect_message_is_the_close() {
    const http = new FakeHttp();
    const client = new Herald("ws://fake/connection/websocket", {
      transports: ["stream"],
      fetch: http.fetch,
      storage: null,
    });
    const closes = [];
    client.on("disconnected", (d) => closes.push([d.code, d.reason]));
    client.connect();
    await until(() => http.streams.length === 1, 1000, "a stream");
    const s = http.streams[0];
    s.write(JSON.stringify({ id: s.connect.id, result: { client: "1", version: "t", ping: 0, session: "S" } }));
    await until(() => client.state === "connected", 1000, "connected");
    s.write(JSON.stringify({ disconnect: { code: 4101, reason: "bad request" } }));
    await until(() => closes.length === 1, 1000, "closed");
    assertEq(closes, [[4101, "bad request"]], "the disconnect message's code");
    await sleep(50);
    assertEq(http.streams.length, 1, "no reconnect after 4101");
    // A stream that just ends was cut: 1006, reconnect.
    client.connect();
    await until(() => http.streams.length === 2, 1000, "second stream");
    const s2 = http.streams[1];
    s2.write(JSON.stringify({ id: s2.connect.id, result: { client: "2", version: "t", ping: 0, session: "S2" } }));
    await until(() => client.state === "connected", 1000, "connected again");
    s2.end();
    await until(() => closes.length === 2, 1000, "cut");
    assertEq(closes[1][0], 1006, "cut stream");
    client.disconnect();
  },

  // Polling: connect, subscribe and recovery answered from polls; a gap
  // push reaches onGap; publish rides in a poll; a refused channel fails
  // only its own subscription and never takes commands with it.
  async poll_subscribe_recover_gap_and_refusal() {
    const http = new FakeHttp();
    const client = new Herald("ws://fake/connection/websocket", {
      transports: ["poll"],
      pollInterval: 30,
      fetch: http.fetch,
      storage: null,
      minReconnectDelay: 20,
    });
    const seen = [];
    const gaps = [];
    const errors = [];
    client.subscribe("chat:p", {
      onPublication: (p) => seen.push([p.offset, p.data.text, p.recovered]),
      onGap: (r) => gaps.push([r.epoch, r.offset]),
    });
    client.connect();
    await until(() => client.subscriptions.get("chat:p").state === "subscribed", 1000, "subscribed");
    assertEq([client.clientId, client.transport], ["p1", "poll"], "connected by a poll");
    assertEq(http.polls[0].channels, {}, "the first poll asks for nothing");
    const asked = http.polls.find((b) => b.channels["chat:p"]);
    assertEq([asked.channels["chat:p"], asked.wait], [{}, 0], "from now on, at once");

    // Two publications, then a gap.
    http.onPoll = (body) => {
      const at = body.channels["chat:p"];
      if (at.offset === 0) {
        return { status: 200, body: { client: "p1", channels: { "chat:p": { epoch: "e1", offset: 2 } }, messages: [
          { push: { channel: "chat:p", epoch: "e1", pub: pub(1, "a") } },
          { push: { channel: "chat:p", epoch: "e1", pub: pub(2, "b") } },
        ] } };
      }
      if (at.offset === 2) {
        return { status: 200, body: { client: "p1", channels: { "chat:p": { epoch: "e2", offset: 9 } }, messages: [
          { push: { channel: "chat:p", gap: { epoch: "e2", offset: 9 } } },
        ] } };
      }
      return { status: 200, body: { client: "p1", channels: positions(body), messages: [] } };
    };
    await until(() => gaps.length === 1, 1000, "gap");
    assertEq(seen, [[1, "a", false], [2, "b", false]], "publications");
    assertEq(gaps, [["e2", 9]], "onGap");
    const sub = client.subscriptions.get("chat:p");
    assertEq([sub.epoch, sub.offset], ["e2", 9], "continues from the channel's position");

    // A publish and a refused subscription at once.
    http.onPoll = (body) => {
      if (body.channels["chat:nope"]) {
        assert(!body.commands, "no commands beside a new subscription");
        return { status: 403, body: { error: { code: 103, message: "chat:nope: permission denied" } } };
      }
      const replies = (body.commands || []).map((c) => ({ id: c.id, result: { epoch: "e2", offset: 10 } }));
      return { status: 200, body: { client: "p1", replies, channels: positions(body), messages: [] } };
    };
    client.subscribe("chat:nope", { onError: (e) => errors.push(e.code) });
    const published = client.publish("chat:p", { text: "hi" });
    assertEq(await published, { epoch: "e2", offset: 10 }, "publish reply");
    await until(() => errors.length === 1, 1000, "refused");
    assertEq(errors, [103], "the refused subscription's error");
    assertEq(http.polls.filter((b) => b.commands).length, 1, "the publish went up once");
    assertEq(client.state, "connected", "still connected");
    client.disconnect();
  },

  // Long polling is held by the server; a command does not wait for it.
  async longpoll_command_does_not_wait_for_held_poll() {
    const http = new FakeHttp();
    const held = [];
    const client = new Herald("ws://fake/connection/websocket", { transports: ["longpoll"], fetch: http.fetch, storage: null });
    client.subscribe("chat:l");
    http.onPoll = (body, init) => {
      if (body.wait > 0) {
        // Held until aborted.
        return new Promise((_, reject) => {
          held.push(body);
          init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
        });
      }
      const replies = (body.commands || []).map((c) => ({ id: c.id, result: {} }));
      return { status: 200, body: { client: "p1", replies, channels: positions(body), messages: [] } };
    };
    client.connect();
    await until(() => held.length === 1, 1000, "a held poll");
    assertEq([held[0].wait, Object.keys(held[0].channels)], [25, ["chat:l"]], "held with the channel, pollWait");
    const t0 = Date.now();
    assertEq(await client.presence("chat:l").catch((e) => e.code), {}, "presence reply");
    assert(Date.now() - t0 < 500, "answered without waiting for the held poll");
    await until(() => held.length === 2, 1000, "held again");
    client.disconnect();
    // Without channels there is nothing to wait for: no poll at all.
    const idle = new Herald("ws://fake/connection/websocket", { transports: ["longpoll"], fetch: http.fetch, storage: null });
    const before = http.polls.length;
    idle.connect();
    await until(() => idle.state === "connected", 1000, "idle connected");
    await sleep(100);
    assertEq(http.polls.length - before, 1, "the connect poll only");
    idle.disconnect();
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
