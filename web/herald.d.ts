// Types for herald.js, the browser client of `herald serve`.
// The wire protocol is docs/protocol.md.

/** Who published, joined or left. `user` is the token's subject ("" in dev mode). */
export interface ClientInfo {
  client: string;
  user: string;
  name?: string;
}

/** A publication as delivered to `onPublication`. */
export interface Publication<T = unknown> {
  channel: string;
  epoch: string;
  offset: number;
  data: T;
  /** Absent for publications from the HTTP API or server logic. */
  info?: ClientInfo;
  /** When the server accepted it, ms since the Unix epoch (namespaces with `server_time`). */
  time?: number;
  /** Delivered from a resubscribe's recovery rather than live. */
  recovered: boolean;
}

/** A publication as the server sends it (history, subscribe results). */
export interface WirePublication<T = unknown> {
  offset: number;
  data: T;
  info?: ClientInfo;
  /** When the server accepted it, ms since the Unix epoch (namespaces with `server_time`). */
  time?: number;
}

/** The result of `subscribe`, also passed to onSubscribed / onRecovered / onGap. */
export interface SubscribeResult {
  epoch: string;
  offset: number;
  /** Present on a resubscribe with recovery. */
  recovered?: boolean;
  publications?: WirePublication[];
}

export interface ConnectResult {
  /** The client id; over polling, the poller's identity. */
  client: string;
  version: string;
  /** Heartbeat interval in seconds (0 over polling: every poll is one). */
  ping: number;
  /** The stream transports' session token (POST /connection/send). */
  session?: string;
  /** The token's `exp` (seconds since the Unix epoch), when it has one. */
  expires?: number;
  /** Seconds until the server closes the connection (4005) unless it is refreshed; with `expires`. */
  ttl?: number;
}

export interface SubscriptionHandlers<T = unknown> {
  onPublication?(publication: Publication<T>): void;
  onJoin?(info: ClientInfo): void;
  onLeave?(info: ClientInfo): void;
  /** After every successful subscribe or resubscribe. */
  onSubscribed?(result: SubscribeResult): void;
  /** After a resubscribe that recovered everything missed. */
  onRecovered?(result: SubscribeResult): void;
  /**
   * After a resubscribe that could not fill the gap, or (polling) a poll
   * whose position history no longer reached: reload your state.
   */
  onGap?(result: SubscribeResult): void;
  /** A message from server logic to this connection only. */
  onMessage?(data: unknown): void;
  /** The server refused the subscription; it is dropped. */
  onError?(error: HeraldError): void;
}

export type ErrorCode = 100 | 101 | 102 | 103 | 104 | 105 | 106 | 107 | 108 | 109;

/** An error reply from the server, or a local failure. */
export class HeraldError extends Error {
  constructor(code: ErrorCode | "timeout" | "disconnected", message: string);
  readonly code: ErrorCode | "timeout" | "disconnected";
  /** The server's message, without the code. */
  readonly reason: string;
}

export type State = "disconnected" | "connecting" | "connected";

/**
 * How the client reaches the server: WebSocket, HTTP streaming (NDJSON over
 * a fetch body), SSE (EventSource), long polling, or polling every
 * `pollInterval` ms. Commands of the stream transports go up as POSTs.
 */
export type Transport = "websocket" | "stream" | "sse" | "longpoll" | "poll";

/** Every transport, in the order tried by default (all but "poll"). */
export const TRANSPORTS: readonly Transport[];

/**
 * What a transport cost: HTTP requests (the WebSocket handshake is one),
 * bytes of bodies and WebSocket frames sent and received (HTTP headers not
 * included), and messages received.
 */
export interface TransportStats {
  requests: number;
  bytesSent: number;
  bytesReceived: number;
  messages: number;
}

export interface HeraldOptions {
  /** Connection token (JWT; the server's configuration fixes the algorithm). */
  token?: string;
  /** Display name, shown in presence and publication info. */
  name?: string;
  /**
   * Called before every connect, and shortly before the connection's token
   * expires (the client then sends `refresh`; see the `ttl` of the connect
   * result). Overrides `token`. Makes 4100 and 4005 closes retryable.
   */
  getToken?: () => string | Promise<string>;
  /** Milliseconds; default 250. */
  minReconnectDelay?: number;
  /** Milliseconds; default 20000. */
  maxReconnectDelay?: number;
  /** Milliseconds to wait for a reply (and for the connection to open); default 10000. */
  timeout?: number;
  /** Milliseconds to wait for a heartbeat reply before the connection counts as dead; default 5000. */
  pingGrace?: number;
  /**
   * The transports to try, in order; default ["websocket", "stream", "sse",
   * "longpoll"]. A transport that fails before its connect reply (1006:
   * refused upgrade, blocked, cut, silent for `openTimeout`) makes way for
   * the next at once. One name forces that transport.
   */
  transports?: Transport[];
  /** Milliseconds a transport has to answer `connect` before the next is tried; default 2500. */
  openTimeout?: number;
  /**
   * Milliseconds between tries to get back to WebSocket while connected over
   * another transport (doubling while they fail); default 60000; 0: never.
   */
  websocketRetry?: number;
  /** Milliseconds between polls of the "poll" transport; default 2000. */
  pollInterval?: number;
  /** Seconds the server may hold a long poll; default 25. */
  pollWait?: number;
  /** A WebSocket implementation; default globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocket;
  /** An EventSource implementation; default globalThis.EventSource. */
  EventSource?: new (url: string) => EventSource;
  /** A fetch implementation; default globalThis.fetch. */
  fetch?: typeof fetch;
  /**
   * Where the transport that worked is remembered (the next client of this
   * URL starts with it); default sessionStorage; null: nowhere.
   */
  storage?: Storage | null;
}

export interface DisconnectedEvent {
  code: number;
  reason: string;
  /** Milliseconds until the next attempt (0: falling back to the next transport), or null: no automatic reconnect. */
  reconnectIn: number | null;
}

export interface TransportEvent {
  transport: Transport;
  /** The transport of the last connection; null for the first. */
  previous: Transport | null;
}

export interface HeraldEvents {
  connected: ConnectResult;
  disconnected: DisconnectedEvent;
  state: State;
  /** Connected over another transport than the last connection. */
  transport: TransportEvent;
  error: Error;
}

export class Subscription<T = unknown> {
  readonly client: Herald;
  readonly channel: string;
  /** The channel epoch last seen; null before the first subscribe. */
  readonly epoch: string | null;
  /** Offset of the last publication delivered. */
  readonly offset: number;
  readonly state: "unsubscribed" | "subscribing" | "subscribed";
  unsubscribe(): void;
}

export class Herald {
  constructor(url: string, options?: HeraldOptions);
  readonly url: string;
  readonly state: State;
  /** This connection's client id, or null while not connected. */
  readonly clientId: string | null;
  /** The transport of the current (or last) connection; null before the first. */
  readonly transport: Transport | null;
  /** Counters per transport used so far. */
  readonly stats: Partial<Record<Transport, TransportStats>>;
  readonly subscriptions: ReadonlyMap<string, Subscription>;
  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof HeraldEvents>(event: E, fn: (arg: HeraldEvents[E]) => void): () => void;
  /** Connects, and keeps reconnecting until disconnect(). */
  connect(): void;
  /** Closes and stops reconnecting; subscriptions are kept for the next connect(). */
  disconnect(): void;
  subscribe<T = unknown>(channel: string, handlers?: SubscriptionHandlers<T>): Subscription<T>;
  /** Resolves with {epoch, offset}, or {} for channels with server logic. */
  publish(channel: string, data: unknown): Promise<{ epoch?: string; offset?: number }>;
  presence(channel: string): Promise<{ clients: ClientInfo[] }>;
  history(
    channel: string,
    options?: { limit?: number },
  ): Promise<{ epoch: string; offset: number; publications: WirePublication[] }>;
}

/**
 * Milliseconds before reconnect attempt `attempt` (0-based) after a close,
 * or null when the close code says not to reconnect.
 */
export function reconnectDelay(
  code: number,
  reason: string,
  attempt: number,
  options: { minReconnectDelay: number; maxReconnectDelay: number; getToken?: unknown },
): number | null;
