// A forwarding HTTP proxy for the browser tests, on 127.0.0.1 only: plain
// HTTP goes through to `herald serve` unbuffered (streams stay streams);
// `Upgrade: websocket` is refused with 403 when `blockWebSocket` is set,
// the way a proxy that strips Upgrade leaves a page, and tunnelled
// otherwise (`proxy.blockWebSocket` may be changed at any time). `cut()`
// drops every connection open through it at once; `outage(ms)` cuts and
// then drops every request to /connection/ for `ms`: a network blip for
// the push connection while the page's other requests (the QR demo's
// phone) still go through.
//
//   const proxy = await startProxy("http://127.0.0.1:8080", { blockWebSocket: true });
//   page.goto(proxy.url + "/demo/chat"); ... proxy.cut(); ... await proxy.close();
//
// The Host header is forwarded as the browser sent it, so the page's Origin
// and the Host the server sees agree (its same-origin rule holds).
import http from "node:http";
import net from "node:net";

/**
 * @param {string} target `http://HOST:PORT` of the server
 * @param {{blockWebSocket?: boolean}} [options]
 * @returns {Promise<{url: string, cut: () => number, outage: (ms: number) => number, close: () => Promise<void>,
 *   blockWebSocket: boolean, refused: number, requests: number}>}
 */
export async function startProxy(target, { blockWebSocket = false } = {}) {
  const to = new URL(target);
  const port = Number(to.port) || 80;
  const open = new Set(); // every socket on either side, for cut()
  const track = (socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    return socket;
  };
  const agent = new http.Agent({ keepAlive: false });
  const proxy = { url: "", refused: 0, requests: 0, blockWebSocket };
  let downUntil = 0;
  const down = (req) => Date.now() < downUntil && req.url.startsWith("/connection/");

  const server = http.createServer((req, res) => {
    if (down(req)) return req.socket.destroy();
    proxy.requests++;
    const upstream = http.request(
      { host: to.hostname, port, method: req.method, path: req.url, headers: req.headers, agent },
      (up) => {
        res.writeHead(up.statusCode, up.rawHeaders);
        res.flushHeaders();
        up.on("data", (chunk) => res.write(chunk));
        up.on("end", () => res.end());
        up.on("error", () => res.destroy());
      },
    );
    upstream.on("socket", track);
    upstream.on("error", () => res.destroy());
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  server.on("connection", track);
  server.on("upgrade", (req, socket, head) => {
    if (down(req)) return socket.destroy();
    if (proxy.blockWebSocket) {
      proxy.refused++;
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\nno WebSocket here.\r\n");
      return;
    }
    const upstream = track(net.connect(port, to.hostname));
    upstream.on("connect", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  /** Destroys every open connection, both sides; returns how many. */
  proxy.cut = () => {
    const n = open.size;
    for (const s of [...open]) s.destroy();
    return n;
  };
  /** Cuts, then refuses the push endpoints for `ms`. */
  proxy.outage = (ms) => {
    downUntil = Date.now() + ms;
    return proxy.cut();
  };
  proxy.close = () =>
    new Promise((resolve) => {
      proxy.cut();
      server.close(() => resolve());
    });
  return proxy;
}
