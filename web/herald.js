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
//   expired token (the `ttl` of the connect and refresh results).

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
  WebSocket: undefined,
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

/**
 * A connection to a Herald server, with its subscriptions.
 *
 * Events (`on`): "connected" ({client, version, ping}), "disconnected"
 * ({code, reason, reconnectIn}: reconnectIn is null when it will not
 * reconnect), "state" ("disconnected" | "connecting" | "connected"),
 * "error" (an Error).
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
   * @param {typeof WebSocket} [options.WebSocket] a WebSocket implementation (tests, Node)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
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
   * @param {(p: {channel: string, epoch: string, offset: number, data: any, info?: object, recovered: boolean}) => void} [handlers.onPublication]
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
    const WS = this.options.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(this.url);
    } catch (e) {
      this._emit("error", e);
      this._retry(1006, "");
      return;
    }
    this._ws = ws;
    ws.onmessage = (e) => this._receive(e.data);
    ws.onclose = (e) => this._closed(e.code, e.reason);
    ws.onerror = () => this._emit("error", new Error(`websocket error on ${this.url}`));
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
    // Covers the TCP and WebSocket handshakes and the connect reply.
    this._connectTimer = this._timer(this.options.timeout, () => {
      if (this._ws === ws && this.state === "connecting") this._closed(1006, "connect timeout");
    });
  }

  _connected(result) {
    clearTimeout(this._connectTimer);
    this._timers.delete(this._connectTimer);
    this._attempt = 0;
    this.clientId = result.client;
    this._setState("connected");
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
    this._retry(code, reason);
  }

  _retry(code, reason) {
    const delay = this._wanted ? reconnectDelay(code, reason, this._attempt, this.options) : null;
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
