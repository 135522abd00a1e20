#!/usr/bin/env node
// Socket.IO 4 fan-out peer for `herald bench fanout --protocol socketio`
// (bench/fanout.py).
//
//   node fanout_socketio.mjs [port]
//
// WebSocket transport only, no permessage-deflate, no HTTP long-polling.
// A client joins a room by emitting "subscribe" with the room's name and
// gets "subscribed" back once joined. `POST /api/publish`
// {"channel","data"} is a room broadcast: io.to(channel).emit("pub", data),
// which Socket.IO encodes once for the whole room. One process, one event
// loop: fanout.py pins it to a core with taskset.
import { Server } from "socket.io";

import { publishServer } from "./fanout_api.mjs";

const port = Number(process.argv[2] ?? 9012);

const server = publishServer((channel, data) => io.to(channel).emit("pub", data));

const io = new Server(server, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});
io.on("connection", (socket) => {
  socket.on("subscribe", (channel) => {
    socket.join(String(channel));
    socket.emit("subscribed", String(channel));
  });
});

server.listen(port, "127.0.0.1", () =>
  console.error(`socket.io fan-out listening on http://127.0.0.1:${port}`),
);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
