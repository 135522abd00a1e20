// The `POST /api/publish` endpoint the Node fan-out peers share
// (fanout_ws.mjs, fanout_socketio.mjs): the generator publishes to them as
// it does to `herald serve`.
import http from "node:http";

/**
 * An HTTP server answering `POST /api/publish` {"channel","data"}: calls
 * `publish(channel, data, offset)` with the next offset (1, 2, ...) and
 * answers `{"offset": N}`; 400 for a body that is not JSON, 404 elsewhere.
 */
export function publishServer(publish) {
  let offset = 0;
  const server = http.createServer((req, res) => {
    if (req.method !== "POST" || !req.url.startsWith("/api/publish")) {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks));
      } catch {
        res.writeHead(400).end();
        return;
      }
      offset += 1;
      publish(body.channel, body.data, offset);
      const out = JSON.stringify({ offset });
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(out) });
      res.end(out);
    });
  });
  server.keepAliveTimeout = 120_000;
  return server;
}
