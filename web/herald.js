// Herald: the browser client of `herald serve`. One ES module, no build
// step, no dependencies. The wire protocol it speaks is docs/protocol.md.
//
//   import { Herald } from "/herald.js";
//   const client = new Herald("ws://localhost:8080/connection/websocket", { name: "Alice" });
//   client.subscribe("chat:lobby", { onPublication: (p) => console.log(p.data) });
//   client.connect();
//
// What it does for you:
// - request/reply by id, with a timeout; error replies reject with a
//   HeraldError carrying the server's code and message;
// - reconnects with exponential backoff and full jitter (250 ms to 20 s),
//   obeying the protocol's close code table (see `reconnectDelay`);
// - resubscribes after a reconnect with `recover: true` and the last
//   (epoch, offset) seen, delivers the recovered publications in order
//   before live ones, drops duplicates by offset, and tells the
//   subscription (`onGap`) when the server could not fill the gap;
// - an application heartbeat, since browsers cannot send WebSocket pings:
//   a `ping` command every `ping` seconds (from the connect result), and a
//   connection with no reply within `pingGrace` of a ping is dead;
// - with `getToken`, a fresh token for every connect, and a `refresh` with
//   a new one shortly before the server would close the connection for an
//   expired token (the `ttl` of the connect and refresh results);
// - falls back when WebSocket fails or is blocked (a proxy that strips
//   `Upgrade`): WebSocket -> HTTP streaming -> SSE -> long polling, each
//   given `openTimeout` to answer `connect`; remembers the transport that
//   worked for the browser session (sessionStorage), tries WebSocket again
//   every `websocketRetry` ms while on another, and recovers across
//   reconnects on every transport (streams resubscribe with `recover`,
//   polls carry a cursor per channel). `client.transport` names the one in
//   use, the "transport" event says when it changes, `client.stats` counts
//   requests and bytes per transport.

/** An error reply from the server, or a local failure ("timeout", "disconnected"). */
export class HeraldError extends Error {
  /**
   * @param {number | string} code protocol error code (100-109), or "timeout" / "disconnected"
   * @param {string} message
   */
  constructor(code, message) {
    super(`${message} (${code})`);
    this.name = "HeraldError";
    this.code = code;
    this.reason = message;
  }
}

const DEFAULTS = {
  token: undefined,
  name: undefined,
  getToken: undefined,
  minReconnectDelay: 250,
  maxReconnectDelay: 20000,
  timeout: 10000,
  pingGrace: 5000,
  transports: ["websocket", "stream", "sse", "longpoll"],
  openTimeout: 2500,
  websocketRetry: 60000,
  pollInterval: 2000,
  pollWait: 25,
  WebSocket: undefined,
  EventSource: undefined,
  fetch: undefined,
  storage: undefined,
};

/**
 * The delay before reconnect attempt `attempt` (0-based) after a close
 * with `code` and `reason`, or `null` for "do not reconnect". Follows the
 * close code table of docs/protocol.md.
 * @param {number} code
 * @param {string} reason
 * @param {number} attempt
 * @param {{minReconnectDelay: number, maxReconnectDelay: number, getToken?: Function}} o
 * @returns {number | null}
 */
export function reconnectDelay(code, reason, attempt, o) {
  // 1003 binary frame, 1009 too big, 4101 bad request: retrying cannot help.
  // 4100 bad token, 4005 token expired: only with a fresh one.
  if (code === 1003 || code === 1009 || code > 4100) return null;
  if ((code === 4100 || code === 4005) && !o.getToken) return null;
  const min = o.minReconnectDelay;
  const hint = code === 1001 && /retry in (\d+) ms/.exec(reason || "");
  if (hint) return Number(hint[1]) + Math.random() * min;
  // Full jitter: uniform between the minimum and an exponential cap.
  const cap = Math.min(o.maxReconnectDelay, min * 2 ** (attempt + 1));
  return min + Math.random() * (cap - min);
}

/**
 * One channel subscription. Survives reconnects: it is resubscribed, with
 * recovery, every time the client connects.
 */
export class Subscription {
  /** @param {Herald} client @param {string} channel @param {object} handlers */
  constructor(client, channel, handlers) {
    this.client = client;
    /** @type {string} */
    this.channel = channel;
    this.handlers = handlers;
    /** The channel's epoch as last seen, or null before the first subscribe. @type {string | null} */
    this.epoch = null;
    /** The offset of the last publication delivered (or the channel's top at first subscribe). */
    this.offset = 0;
    /** "unsubscribed" | "subscribing" | "subscribed" */
    this.state = "unsubscribed";
  }

  /** Stops the subscription, now and after reconnects. */
  unsubscribe() {
    const c = this.client;
    if (c.subscriptions.get(this.channel) !== this) return;
    c.subscriptions.delete(this.channel);
    if (this.state !== "unsubscribed" && c.state === "connected") {
      c._request({ unsubscribe: { channel: this.channel } }).catch(() => {});
    }
    this.state = "unsubscribed";
  }

  _call(name, ...args) {
    const fn = this.handlers[name];
    if (!fn) return;
    try {
      fn(...args);
    } catch (e) {
      this.client._emit("error", e);
    }
  }

  // Delivers a publication unless it was already delivered.
  _deliver(epoch, pub, recovered) {
    if (epoch === this.epoch && pub.offset <= this.offset) return;
    this.epoch = epoch;
    this.offset = pub.offset;
    this._call("onPublication", {
      channel: this.channel,
      epoch,
      offset: pub.offset,
      data: pub.data,
      info: pub.info,
      time: pub.time,
      recovered,
    });
  }

  // The subscribe reply: first subscribe, or resubscribe with recovery.
  _subscribed(result) {
    this.state = "subscribed";
    const pubs = result.publications || [];
    if (result.recovered === undefined) {
      this.epoch = result.epoch;
      this.offset = result.offset;
    } else {
      if (result.recovered === false) this._call("onGap", result);
      for (const p of pubs) this._deliver(result.epoch, p, true);
      // Whatever else is missing is lost: continue from the channel's top.
      if (this.epoch !== result.epoch) this.offset = result.offset;
      this.epoch = result.epoch;
      this.offset = Math.max(this.offset, result.offset);
      if (result.recovered) this._call("onRecovered", result);
    }
    this._call("onSubscribed", result);
  }

  _push(push) {
    if (push.pub) this._deliver(push.epoch, push.pub, false);
    else if (push.gap) {
      // Polling: history no longer reached back to this subscription's
      // position. Continue from the channel's, and say so.
      this.epoch = push.gap.epoch;
      this.offset = push.gap.offset;
      this._call("onGap", { epoch: push.gap.epoch, offset: push.gap.offset, recovered: false, publications: [] });
    }
    else if (push.join) this._call("onJoin", push.join);
    else if (push.leave) this._call("onLeave", push.leave);
    else if (push.presence) {
      // A large channel's joins and leaves, batched: the batch may hold
      // this connection's own join, which single pushes never do.
      const self = this.client.clientId;
      for (const j of push.presence.join || []) if (j.client !== self) this._call("onJoin", j);
      for (const l of push.presence.leave || []) if (l.client !== self) this._call("onLeave", l);
    }
    else if ("message" in push) this._call("onMessage", push.message);
  }
}

// ----- transports ------------------------------------------------------------
//
// Every transport looks like a WebSocket to the client above: `send(text)`
// one command, `onopen`, `onmessage({data})` one reply or push, `onclose({code,
// reason})` with the protocol's close codes (1006: lost), `close()`. HTTP
// failures that are not the server's answer (a refused upgrade, a proxy's
// 403, a cut connection) come out as 1006, which is what makes the client
// fall back to the next transport.

/** Transport names, in the order the client tries them by default. */
export const TRANSPORTS = ["websocket", "stream", "sse", "longpoll", "poll"];

const ENCODER = new TextEncoder();
const utf8Length = (text) => ENCODER.encode(text).length;

// A WebSocket frame's size on the wire: header, client mask, payload.
function frameLength(payload, masked) {
  const n = utf8Length(payload);
  return n + 2 + (n > 65535 ? 8 : n > 125 ? 2 : 0) + (masked ? 4 : 0);
}

/** Counts what a transport costs: HTTP requests (the WebSocket handshake is one), bytes of bodies and frames. */
class Stats {
  constructor() {
    this.requests = 0;
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.messages = 0;
  }
}

class WebSocketTransport {
  constructor(client, url) {
    this.stats = client._stats("websocket");
    const WS = client.options.WebSocket || globalThis.WebSocket;
    const ws = (this.ws = new WS(url));
    this.stats.requests++;
    ws.onopen = () => this.onopen?.();
    ws.onmessage = (e) => {
      this.stats.bytesReceived += frameLength(String(e.data), false);
      this.stats.messages++;
      this.onmessage?.(e);
    };
    ws.onclose = (e) => this.onclose?.(e);
    ws.onerror = (e) => this.onerror?.(e);
  }

  get readyState() {
    return this.ws.readyState;
  }

  send(text) {
    this.stats.bytesSent += frameLength(text, true);
    this.ws.send(text);
  }

  close(code) {
    this.ws.close(code);
  }
}

// The base URL of the HTTP transports: `ws://h/connection/websocket` ->
// `http://h/connection`.
function httpBase(url) {
  const u = new URL(url, globalThis.location?.href);
  u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
  u.pathname = u.pathname.replace(/\/websocket\/?$/, "");
  u.search = u.hash = "";
  return u.href.replace(/\/$/, "");
}

// An HTTP error answer as a close: a token problem is 4100 (as over
// WebSocket); anything else means the transport does not work here.
async function httpFailure(res) {
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body?.error?.message) message = body.error.message;
  } catch {}
  return { code: res.status === 401 ? 4100 : 1006, reason: message };
}

/**
 * HTTP streaming (`POST /connection/stream`, NDJSON) or SSE (`GET
 * /connection/sse`, EventSource): one long response carries replies and
 * pushes; later commands go up as `POST /connection/send` with the
 * session token of the connect reply.
 */
class StreamTransport {
  constructor(client, url, kind) {
    this.client = client;
    this.kind = kind;
    this.base = httpBase(url);
    this.stats = client._stats(kind);
    this.fetch = client.options.fetch || globalThis.fetch.bind(globalThis);
    this.readyState = 0;
    this.session = null;
    this.queue = [];
    this.sending = false;
    this.abort = new AbortController();
    this.source = null;
    // Like a WebSocket, opened "soon": the client then sends `connect`.
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.();
    }, 0);
  }

  send(text) {
    if (this.readyState !== 1) return;
    if (!this.started) {
      this.started = true;
      if (this.kind === "sse") this._sse(text);
      else this._stream(text);
      return;
    }
    this.queue.push(text);
    this._flush();
  }

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.abort.abort();
    this.source?.close();
  }

  _fail(code, reason) {
    if (this.readyState === 3) return;
    this.close();
    this.onclose?.({ code, reason });
  }

  // One line of the stream: a reply, a push, or the server's goodbye.
  _message(text) {
    if (this.readyState !== 1 || !text.trim()) return;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this._fail(1006, "not JSON on the stream");
    }
    if (msg.disconnect) return this._fail(msg.disconnect.code, msg.disconnect.reason || "");
    this.stats.messages++;
    if (!this.session && msg.result?.session) {
      this.session = msg.result.session;
      this._flush();
    }
    this.onmessage?.({ data: text });
  }

  async _stream(connect) {
    const stats = this.stats;
    stats.requests++;
    stats.bytesSent += utf8Length(connect);
    let res;
    try {
      res = await this.fetch(`${this.base}/stream`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: connect,
        cache: "no-store",
        signal: this.abort.signal,
      });
    } catch {
      return this._fail(1006, "stream failed");
    }
    if (!res.ok) {
      const { code, reason } = await httpFailure(res);
      return this._fail(code, reason);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stats.bytesReceived += value.length;
        buffered += decoder.decode(value, { stream: true });
        const lines = buffered.split("\n");
        buffered = lines.pop();
        for (const line of lines) this._message(line);
        this.client._lastSeen = Date.now(); // keepalive lines count as life
      }
    } catch {}
    // A stream that ends without a `disconnect` was cut.
    this._fail(1006, "stream ended");
  }

  _sse(connect) {
    const ES = this.client.options.EventSource || globalThis.EventSource;
    const url = `${this.base}/sse?connect=${encodeURIComponent(connect)}`;
    this.stats.requests++;
    this.stats.bytesSent += utf8Length(url);
    let source;
    try {
      source = this.source = new ES(url);
    } catch {
      return setTimeout(() => this._fail(1006, "sse failed"), 0);
    }
    source.onmessage = (e) => {
      // "data: " and the blank line after it; `id:` lines not counted.
      this.stats.bytesReceived += utf8Length(e.data) + 8;
      this._message(e.data);
    };
    // EventSource would reconnect by itself, with a new session and no
    // recovery: the client reconnects instead, and resubscribes.
    source.onerror = () => this._fail(1006, "sse stream lost");
  }

  // Commands go up in order, one POST at a time, as many per POST as have
  // queued meanwhile.
  async _flush() {
    if (this.sending || !this.session || !this.queue.length || this.readyState !== 1) return;
    this.sending = true;
    const commands = this.queue.splice(0, 64);
    const body = `{"session":${JSON.stringify(this.session)},"commands":[${commands.join(",")}]}`;
    this.stats.requests++;
    this.stats.bytesSent += utf8Length(body);
    try {
      const res = await this.fetch(`${this.base}/send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        cache: "no-store",
        signal: this.abort.signal,
      });
      const text = await res.text();
      this.stats.bytesReceived += utf8Length(text);
      // 404: the session ended; 403: not ours; 421: its node is gone.
      if (!res.ok) return this._fail(1006, `send: HTTP ${res.status}`);
    } catch {
      return this._fail(1006, "send failed");
    } finally {
      this.sending = false;
    }
    this._flush();
  }
}

/**
 * Long polling (`wait` > 0) and polling (a request every `pollInterval`
 * ms): `POST /connection/poll` with a cursor per channel. There is no
 * session on the server, so this side answers `connect`, `subscribe`,
 * `unsubscribe` and `refresh` itself, from the polls' answers, in the shape
 * the server would; `publish`, `presence`, `history` and `ping` ride in
 * the next poll.
 */
class PollTransport {
  constructor(client, url, kind) {
    this.client = client;
    this.kind = kind;
    this.url = `${httpBase(url)}/poll`;
    this.stats = client._stats(kind);
    this.fetch = client.options.fetch || globalThis.fetch.bind(globalThis);
    this.readyState = 0;
    /** channel -> the position to poll from ({} for "from now on") */
    this.cursors = new Map();
    /** channel -> {id, recover} of a subscribe waiting for its first answer */
    this.subscribing = new Map();
    this.commands = [];
    this.pollId = null; // the server's name for this poller, sent back
    this.connectId = null;
    this.inflight = null; // {abort, held}
    this.timer = null;
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.();
    }, 0);
  }

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.inflight?.abort.abort();
    clearTimeout(this.timer);
  }

  _fail(code, reason) {
    if (this.readyState === 3) return;
    this.close();
    this.onclose?.({ code, reason });
  }

  _reply(id, result, error) {
    const msg = error ? { id, error } : { id, result };
    queueMicrotask(() => this.readyState === 1 && this.onmessage?.({ data: JSON.stringify(msg) }));
  }

  send(text) {
    if (this.readyState !== 1) return;
    const cmd = JSON.parse(text);
    const id = cmd.id;
    if (cmd.connect) {
      this.token = cmd.connect.token;
      this.name = cmd.connect.name;
      this.connectId = id;
      return this._now();
    }
    if (cmd.subscribe) {
      const { channel, recover, epoch, offset } = cmd.subscribe;
      if (this.cursors.has(channel)) return this._reply(id, null, { code: 105, message: "already subscribed" });
      this.cursors.set(channel, recover ? { epoch, offset } : {});
      this.subscribing.set(channel, { id, recover: !!recover });
      return this._now();
    }
    if (cmd.unsubscribe) {
      const known = this.cursors.delete(cmd.unsubscribe.channel);
      this.subscribing.delete(cmd.unsubscribe.channel);
      return known ? this._reply(id, {}) : this._reply(id, null, { code: 106, message: "not subscribed" });
    }
    if (cmd.refresh) {
      // Checked by the server on the next poll (401 if bad).
      this.token = cmd.refresh.token;
      return this._reply(id, {});
    }
    this.commands.push(text);
    this._now();
  }

  // Something to ask now: stop waiting for the held poll (its answer would
  // be refetched from the same cursors) and poll at once.
  _now() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.inflight?.held) this.inflight.abort.abort();
    if (!this.inflight) queueMicrotask(() => this._poll());
  }

  async _poll() {
    if (this.readyState !== 1 || this.inflight) return;
    clearTimeout(this.timer);
    this.timer = null;
    // A new channel the server refuses fails the whole poll (403), after
    // its commands ran: commands wait until no subscription is new, so a
    // refused one cannot take their replies with it.
    const commands = this.subscribing.size ? [] : this.commands.splice(0, 64);
    const urgent = commands.length > 0 || this.subscribing.size > 0 || this.connectId !== null;
    const wait = this.kind === "longpoll" && !urgent ? this.client.options.pollWait : 0;
    const sent = new Map(this.cursors);
    const body = { channels: Object.fromEntries(sent), wait };
    if (this.token !== undefined) body.token = this.token;
    if (this.name !== undefined) body.name = this.name;
    if (this.pollId !== null) body.client = this.pollId;
    let text = JSON.stringify(body);
    if (commands.length) text = `${text.slice(0, -1)},"commands":[${commands.join(",")}]}`;
    const inflight = (this.inflight = { abort: new AbortController(), held: wait > 0 });
    const deadline = setTimeout(() => inflight.abort.abort("timeout"), wait * 1000 + this.client.options.timeout);
    this.stats.requests++;
    this.stats.bytesSent += utf8Length(text);
    let res, answer;
    try {
      res = await this.fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: text,
        cache: "no-store",
        signal: inflight.abort.signal,
      });
      const got = await res.text();
      this.stats.bytesReceived += utf8Length(got);
      if (res.ok) answer = JSON.parse(got);
      else {
        let error = {};
        try {
          error = JSON.parse(got).error || {};
        } catch {}
        answer = { status: res.status, error };
      }
    } catch (e) {
      answer = { aborted: inflight.abort.signal.aborted && inflight.abort.signal.reason !== "timeout" };
    } finally {
      clearTimeout(deadline);
      this.inflight = null;
    }
    if (this.readyState !== 1) return;
    if (answer.aborted && inflight.held) return this._poll(); // by _now(): ask again
    if (answer.error) return this._refused(answer);
    if (!answer.channels) return this._fail(1006, answer.status ? `poll: HTTP ${answer.status}` : "poll failed");
    this.client._lastSeen = Date.now();
    this._answer(answer, sent);
    // Queued meanwhile, or a new subscription: at once. No channel: nothing
    // to wait for (the server would answer at once, again and again) until
    // the next command.
    if (this.commands.length || this.subscribing.size || this.connectId !== null) this._now();
    else if (!this.cursors.size) return;
    else if (this.kind === "longpoll") this._poll();
    else this.timer = setTimeout(() => this._poll(), this.client.options.pollInterval);
  }

  // 401: the token (as over WebSocket, 4100). 403 (or 413: too many
  // subscriptions): a channel of the request is refused, and the whole
  // request with it. A new subscription is to blame: the one the message
  // names ("chat:x: permission denied"), else the newest; the others are
  // tried again.
  _refused({ status, error }) {
    if (status === 401) return this._fail(4100, error.message || "unauthorized");
    const pending = [...this.subscribing.keys()];
    const named = pending.find((c) => String(error.message).startsWith(`${c}: `));
    const blamed = named ?? pending.pop();
    if ((status === 403 || status === 413) && blamed !== undefined) {
      const { id } = this.subscribing.get(blamed);
      this.subscribing.delete(blamed);
      this.cursors.delete(blamed);
      this._reply(id, null, { code: error.code || 103, message: error.message || "permission denied" });
      return this._now();
    }
    this._fail(1006, `poll: HTTP ${status}`);
  }

  _answer(answer, sent) {
    this.pollId = answer.client ?? this.pollId;
    if (this.connectId !== null) {
      const id = this.connectId;
      this.connectId = null;
      // The presence id (p17), so the page can tell its own entry.
      this.onmessage?.({ data: JSON.stringify({ id, result: { client: answer.id ?? this.pollId, version: "", ping: 0 } }) });
    }
    for (const r of answer.replies || []) this._deliver(r);
    const messages = answer.messages || [];
    const taken = new Set();
    for (const [channel, position] of Object.entries(answer.channels)) {
      // Moved on only if still polled from where this poll asked.
      if (!sent.has(channel) || this.cursors.get(channel) !== sent.get(channel)) continue;
      this.cursors.set(channel, position);
      const subscribing = this.subscribing.get(channel);
      if (!subscribing) continue;
      this.subscribing.delete(channel);
      const mine = messages.filter((m) => m.push?.channel === channel);
      const result = { epoch: position.epoch, offset: position.offset };
      if (subscribing.recover) {
        result.recovered = !mine.some((m) => m.push.gap);
        result.publications = mine.filter((m) => m.push.pub).map((m) => m.push.pub);
      }
      this._deliver({ id: subscribing.id, result });
      for (const m of mine) taken.add(m);
    }
    for (const m of messages) if (!taken.has(m)) this._deliver(m);
  }

  _deliver(msg) {
    if (this.readyState !== 1) return;
    this.stats.messages++;
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

/**
 * A connection to a Herald server, with its subscriptions.
 *
 * Events (`on`): "connected" ({client, version, ping}), "disconnected"
 * ({code, reason, reconnectIn}: reconnectIn is null when it will not
 * reconnect, 0 when falling back to the next transport), "state"
 * ("disconnected" | "connecting" | "connected"), "transport" ({transport,
 * previous}: connected over another transport than last time), "error"
 * (an Error).
 */
export class Herald {
  /**
   * @param {string} url `ws://HOST:PORT/connection/websocket`
   * @param {object} [options]
   * @param {string} [options.token] connection token (JWT)
   * @param {string} [options.name] display name, shown in presence
   * @param {() => (string | Promise<string>)} [options.getToken] called before every connect, and
   *   before the connection's token expires (to `refresh` it); overrides `token`
   * @param {number} [options.minReconnectDelay] ms, default 250
   * @param {number} [options.maxReconnectDelay] ms, default 20000
   * @param {number} [options.timeout] ms to wait for a reply, default 10000
   * @param {number} [options.pingGrace] ms to wait for a heartbeat reply, default 5000
   * @param {string[]} [options.transports] the transports to try, in order: "websocket", "stream"
   *   (HTTP streaming), "sse", "longpoll", "poll" (a request every `pollInterval`); default all
   *   but "poll". One name forces that transport.
   * @param {number} [options.openTimeout] ms a transport has to answer `connect` before the next
   *   one is tried, default 2500 (the last one gets `timeout`)
   * @param {number} [options.websocketRetry] ms between attempts to get back to WebSocket while on
   *   another transport (doubling while they fail), default 60000; 0: never
   * @param {number} [options.pollInterval] ms between polls of "poll", default 2000
   * @param {number} [options.pollWait] s a long poll may be held by the server, default 25
   * @param {typeof WebSocket} [options.WebSocket] a WebSocket implementation (tests, Node)
   * @param {typeof EventSource} [options.EventSource] an EventSource implementation
   * @param {typeof fetch} [options.fetch] a fetch implementation
   * @param {Storage | null} [options.storage] where the transport that worked is remembered,
   *   default sessionStorage; null: nowhere
   */
  constructor(url, options = {}) {
    this.url = url;
    // An option given as undefined keeps its default.
    this.options = { ...DEFAULTS };
    for (const [key, value] of Object.entries(options)) if (value !== undefined) this.options[key] = value;
    /** "disconnected" | "connecting" | "connected" */
    this.state = "disconnected";
    /** This connection's client id (from the connect result), or null. @type {string | null} */
    this.clientId = null;
    /** @type {Map<string, Subscription>} */
    this.subscriptions = new Map();
    this._listeners = {};
    this._pending = new Map();
    this._nextId = 1;
    this._ws = null;
    this._wanted = false;
    this._attempt = 0;
    this._timers = new Set();
    this._lastSeen = 0;
    /** The transport of the current (or last) connection, or null before the first. @type {string | null} */
    this.transport = null;
    /** Requests, bytes sent and received, messages received, per transport. @type {Object<string, Stats>} */
    this.stats = {};
    const allowed = this.options.transports.filter((t) => TRANSPORTS.includes(t));
    if (!allowed.length) throw new Error(`no known transport in ${JSON.stringify(this.options.transports)}`);
    this._storageKey = `herald.transport ${url}`;
    let remembered = null;
    try {
      remembered = this._storage()?.getItem(this._storageKey);
    } catch {}
    // Start with the one that worked last in this browser session.
    this._order = allowed.includes(remembered) ? [remembered, ...allowed.filter((t) => t !== remembered)] : allowed;
    this._index = 0;
    this._probeDelay = this.options.websocketRetry;
  }

  /**
   * Adds an event listener; returns a function that removes it.
   * @param {"connected" | "disconnected" | "state" | "error"} event
   * @param {(arg: any) => void} fn
   */
  on(event, fn) {
    (this._listeners[event] ||= new Set()).add(fn);
    return () => this._listeners[event].delete(fn);
  }

  /** Connects, and keeps reconnecting until `disconnect()`. */
  connect() {
    this._wanted = true;
    if (this.state === "disconnected" && !this._timers.size) this._open();
  }

  /** Closes the connection and stops reconnecting. Subscriptions are kept for the next `connect()`. */
  disconnect() {
    this._wanted = false;
    this._clearTimers();
    if (this._ws) this._closed(1000, "client disconnect");
  }

  /**
   * Subscribes to `channel`, now if connected and again after every reconnect.
   * @param {string} channel
   * @param {object} [handlers]
   * @param {(p: {channel: string, epoch: string, offset: number, data: any, info?: object, time?: number, recovered: boolean}) => void} [handlers.onPublication]
   * @param {(info: {client: string, user: string, name?: string}) => void} [handlers.onJoin]
   * @param {(info: {client: string, user: string, name?: string}) => void} [handlers.onLeave]
   * @param {(result: object) => void} [handlers.onSubscribed] after every successful (re)subscribe
   * @param {(result: object) => void} [handlers.onRecovered] after a resubscribe that lost nothing
   * @param {(result: object) => void} [handlers.onGap] after a resubscribe that could not fill the gap: reload state
   * @param {(data: any) => void} [handlers.onMessage] a message from server logic to this connection
   * @param {(error: Error) => void} [handlers.onError] the server refused the subscription
   * @returns {Subscription}
   */
  subscribe(channel, handlers = {}) {
    if (this.subscriptions.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, handlers);
    this.subscriptions.set(channel, sub);
    if (this.state === "connected") this._subscribe(sub);
    return sub;
  }

  /**
   * Publishes `data` to `channel`. Resolves with `{epoch, offset}` (or `{}`
   * for channels with server logic).
   * @param {string} channel
   * @param {any} data
   * @returns {Promise<object>}
   */
  publish(channel, data) {
    return this._request({ publish: { channel, data } });
  }

  /**
   * Who is subscribed to `channel`.
   * @param {string} channel
   * @returns {Promise<{clients: Array<{client: string, user: string, name?: string}>}>}
   */
  presence(channel) {
    return this._request({ presence: { channel } });
  }

  /**
   * The newest kept publications of `channel`, oldest first.
   * @param {string} channel
   * @param {{limit?: number}} [options]
   * @returns {Promise<{epoch: string, offset: number, publications: Array<object>}>}
   */
  history(channel, { limit } = {}) {
    return this._request({ history: limit === undefined ? { channel } : { channel, limit } });
  }

  // ----- internals ---------------------------------------------------------

  _storage() {
    if (this.options.storage !== undefined) return this.options.storage;
    try {
      return globalThis.sessionStorage ?? null;
    } catch {
      return null; // sandboxed frames throw
    }
  }

  _stats(name) {
    return (this.stats[name] ||= new Stats());
  }

  _emit(event, arg) {
    for (const fn of this._listeners[event] || []) {
      try {
        fn(arg);
      } catch (e) {
        if (event !== "error") this._emit("error", e);
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  _timer(ms, fn) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _clearTimers() {
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    clearInterval(this._pinger);
  }

  async _open() {
    this._setState("connecting");
    let token = this.options.token;
    try {
      if (this.options.getToken) token = await this.options.getToken();
    } catch (e) {
      this._emit("error", e);
      this._retry(1006, "getToken failed");
      return;
    }
    if (!this._wanted) return this._setState("disconnected"); // disconnect() meanwhile
    this._token = token;
    const name = this._order[this._index];
    let ws;
    try {
      if (name === "websocket") ws = new WebSocketTransport(this, this.url);
      else if (name === "stream" || name === "sse") ws = new StreamTransport(this, this.url, name);
      else ws = new PollTransport(this, this.url, name);
    } catch (e) {
      this._emit("error", e);
      this._ws = { readyState: 3, close() {} };
      this._closed(1006, String(e?.message || e));
      return;
    }
    this._ws = ws;
    ws.onmessage = (e) => this._receive(e.data);
    ws.onclose = (e) => this._closed(e.code, e.reason);
    ws.onerror = () => this._emit("error", new Error(`${name} error on ${this.url}`));
    ws.onopen = () => {
      const connect = {};
      if (token !== undefined) connect.token = token;
      if (this.options.name !== undefined) connect.name = this.options.name;
      this._request({ connect }, true).then(
        (result) => this._connected(result),
        (e) => {
          if (e.code === "disconnected") return; // the close says why
          this._emit("error", e);
          if (this._ws === ws) this._closed(1006, "connect failed");
        },
      );
    };
    // Covers the TCP and WebSocket handshakes and the connect reply; short
    // while another transport is left to try.
    const last = this._index === this._order.length - 1;
    this._connectTimer = this._timer(last ? this.options.timeout : this.options.openTimeout, () => {
      if (this._ws === ws && this.state === "connecting") this._closed(1006, "connect timeout");
    });
  }

  _connected(result) {
    clearTimeout(this._connectTimer);
    this._timers.delete(this._connectTimer);
    this._attempt = 0;
    this.clientId = result.client;
    this._setState("connected");
    const name = this._order[this._index];
    if (this.transport !== name) {
      const previous = this.transport;
      this.transport = name;
      this._emit("transport", { transport: name, previous });
    }
    try {
      this._storage()?.setItem(this._storageKey, name);
    } catch {}
    if (name !== "websocket" && this._order.includes("websocket") && this.options.websocketRetry > 0) {
      this._timer(this._probeDelay, () => this._probe());
    }
    if (result.ping > 0) {
      this._pinger = setInterval(() => this._ping(), result.ping * 1000);
    }
    this._scheduleRefresh(result.ttl);
    this._emit("connected", result);
    for (const sub of this.subscriptions.values()) this._subscribe(sub);
  }

  // `ttl`: seconds until the server closes this connection for an expired
  // token (absent: never). Counted from now rather than from `expires`, so a
  // wrong client clock does not matter. Refreshes a minute before, or half
  // way for short-lived tokens.
  _scheduleRefresh(ttl) {
    if (!this.options.getToken || !(ttl > 0)) return;
    const ms = ttl * 1000;
    const at = Date.now() + ms - Math.min(60000, ms / 2);
    const arm = () => {
      const left = at - Date.now();
      // setTimeout fires at once for delays past 2^31 - 1 ms (24.8 days).
      if (left > 2 ** 31 - 1) return this._timer(2 ** 31 - 1, arm);
      this._timer(Math.max(0, left), () => this._refresh());
    };
    arm();
  }

  // On failure the server closes with 4005 when the old token runs out, and
  // the reconnect asks getToken again.
  async _refresh() {
    const ws = this._ws;
    try {
      const token = await this.options.getToken();
      if (this._ws !== ws || this.state !== "connected") return;
      const result = await this._request({ refresh: { token } });
      if (this._ws === ws) this._scheduleRefresh(result.ttl);
    } catch (e) {
      if (e.code !== "disconnected") this._emit("error", e);
    }
  }

  // On another transport: can WebSocket get through now? A trial
  // connection that gets its connect reply says yes; then the client
  // reconnects over WebSocket at once (and recovers, as after any
  // reconnect).
  _probe() {
    let ws;
    try {
      ws = new WebSocketTransport(this, this.url);
    } catch {
      return;
    }
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        if (ws.readyState < 2) ws.close(1000);
      } catch {}
      if (this.state !== "connected" || !this._wanted || this.transport === "websocket") return;
      if (!ok) {
        this._probeDelay = Math.min(this._probeDelay * 2, 600000);
        this._timer(this._probeDelay, () => this._probe());
        return;
      }
      this._probeDelay = this.options.websocketRetry;
      this._index = this._order.indexOf("websocket");
      this._switching = true;
      this._closed(1000, "switching to websocket");
    };
    const timer = setTimeout(() => finish(false), this.options.openTimeout);
    ws.onopen = () => {
      const connect = {};
      if (this._token !== undefined) connect.token = this._token;
      if (this.options.name !== undefined) connect.name = this.options.name;
      ws.send(JSON.stringify({ id: 1, connect }));
    };
    ws.onmessage = (e) => {
      let msg = {};
      try {
        msg = JSON.parse(e.data);
      } catch {}
      finish(msg.id === 1 && !!msg.result);
    };
    ws.onclose = () => finish(false);
  }

  _ping() {
    const sent = Date.now();
    this._request({ ping: {} }).catch(() => {});
    this._timer(this.options.pingGrace, () => {
      // Silence since the ping: ping + grace without a word.
      if (this._lastSeen < sent && this.state === "connected") this._closed(1006, "heartbeat timeout");
    });
  }

  _subscribe(sub) {
    const params = { channel: sub.channel };
    if (sub.epoch !== null) Object.assign(params, { recover: true, epoch: sub.epoch, offset: sub.offset });
    sub.state = "subscribing";
    this._request({ subscribe: params }).then(
      (result) => {
        if (this.subscriptions.get(sub.channel) === sub) sub._subscribed(result);
      },
      (e) => {
        if (e.code === "disconnected") return; // resubscribed on reconnect
        sub.state = "unsubscribed";
        if (this.subscriptions.get(sub.channel) === sub) this.subscriptions.delete(sub.channel);
        sub._call("onError", e);
        this._emit("error", e);
      },
    );
  }

  // Sends a command; resolves with its result. Only `connect` may go
  // before the connection is established.
  _request(method, connecting = false) {
    const ws = this._ws;
    if (!ws || (this.state !== "connected" && !connecting)) {
      return Promise.reject(new HeraldError("disconnected", "not connected"));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new HeraldError("timeout", "no reply"));
      }, this.options.timeout);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ id, ...method }));
    });
  }

  _receive(text) {
    this._lastSeen = Date.now();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this._emit("error", new Error("not JSON: " + String(text).slice(0, 100)));
    }
    if (msg.id !== undefined) {
      const p = this._pending.get(msg.id);
      if (!p) return;
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new HeraldError(msg.error.code, msg.error.message));
      else p.resolve(msg.result);
    } else if (msg.push) {
      const sub = this.subscriptions.get(msg.push.channel);
      if (sub && sub.state === "subscribed") sub._push(msg.push);
    }
  }

  // The socket is gone (closed by the server, lost, or given up on here).
  _closed(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    const wasConnected = this.state === "connected";
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    // A close we start does not wait for the closing handshake: a dead
    // connection would hold it for a long time.
    if (ws.readyState < 2) ws.close(1000);
    this._clearTimers();
    this.clientId = null;
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(new HeraldError("disconnected", "connection closed"));
    }
    this._pending.clear();
    for (const sub of this.subscriptions.values()) sub.state = "unsubscribed";
    // Never connected and lost (refused upgrade, blocked, cut, silent):
    // this transport does not get through; the next one is tried at once.
    if (!wasConnected && code === 1006 && this._wanted) {
      if (this._index < this._order.length - 1) {
        this._index++;
        this._emit("disconnected", { code, reason, reconnectIn: 0 });
        this._open();
        return;
      }
      this._index = 0; // none did: from the first again, after a backoff
    }
    this._retry(code, reason);
  }

  _retry(code, reason) {
    let delay = this._wanted ? reconnectDelay(code, reason, this._attempt, this.options) : null;
    if (this._switching && this._wanted) delay = 0;
    this._switching = false;
    this._setState("disconnected");
    this._emit("disconnected", { code, reason, reconnectIn: delay });
    if (delay === null) {
      this._wanted = false;
      return;
    }
    this._attempt++;
    this._timer(delay, () => {
      if (this._wanted) this._open();
    });
  }
}
