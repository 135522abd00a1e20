// The client side of herald's interop scenarios, written once for both the
// Node `ws` client (node_client.mjs) and Chromium's WebSocket (chromium.mjs):
// `ws` implements the same WHATWG interface (addEventListener, binaryType,
// send, close). The function must stay self-contained: chromium.mjs sends
// its source text into the page.
//
// Scenarios (the same as interop/python_client.py):
//   echo          send every case of the matrix, check each echo, close 1000
//   client_close  close with 4000 "done"
//   server_close  send "close me" and wait for the server to close
//   reflect       send back every message received, until the server closes
//
// `emit` receives the objects the Rust test compares, in this key order:
//   {event:"open", protocol, extensions}
//   {event:"echo", case, bytes, same}
//   {event:"closed", code, reason}

export async function runScenario(open, scenario, emit) {
  const TEXT_UNIT = "κόσμε0123456789abcdefghijkl"; // 32 bytes of UTF-8
  const pattern = (n) => {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) a[i] = i % 251;
    return a.buffer;
  };
  const cases = [
    ["text", "hello, herald ☃"],
    ["binary", Uint8Array.from({ length: 256 }, (_, i) => i).buffer],
    ["empty", new ArrayBuffer(0)],
    ["binary_1mib", pattern(1 << 20)],
    ["text_1mib", TEXT_UNIT.repeat((1 << 20) / 32)],
  ];

  const size = (m) =>
    typeof m === "string" ? new TextEncoder().encode(m).length : m.byteLength;
  const same = (a, b) => {
    if (typeof a === "string") return a === b;
    if (!(b instanceof ArrayBuffer) && !(b && b.constructor && b.constructor.name === "ArrayBuffer")) {
      return false;
    }
    if (a.byteLength !== b.byteLength) return false;
    const x = new Uint8Array(a);
    const y = new Uint8Array(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  };

  const ws = open();
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let wake = null;
  let closed = null;
  const closedP = new Promise((resolve) =>
    ws.addEventListener("close", (e) => {
      closed = { code: e.code, reason: e.reason };
      resolve();
      if (wake) wake();
    }),
  );
  ws.addEventListener("message", (e) => {
    inbox.push(e.data);
    if (wake) wake();
  });
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve);
    ws.addEventListener("close", () => reject(new Error("closed before open")));
  });
  const next = async () => {
    while (inbox.length === 0 && !closed) await new Promise((r) => (wake = r));
    wake = null;
    return inbox.length ? inbox.shift() : null;
  };

  emit({
    event: "open",
    protocol: ws.protocol || null,
    extensions: ws.extensions
      ? ws.extensions.split(",").map((e) => e.split(";")[0].trim()).filter(Boolean)
      : [],
  });
  if (scenario === "echo") {
    for (const [name, msg] of cases) {
      ws.send(msg);
      const got = await next();
      emit({ event: "echo", case: name, bytes: size(msg), same: same(msg, got) });
    }
    ws.close(1000);
  } else if (scenario === "client_close") {
    ws.close(4000, "done");
  } else if (scenario === "server_close") {
    ws.send("close me");
    const got = await next();
    if (got !== null) emit({ event: "unexpected", message: String(got).slice(0, 80) });
  } else if (scenario === "reflect") {
    for (let got = await next(); got !== null; got = await next()) ws.send(got);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  await closedP;
  emit({ event: "closed", code: closed.code, reason: closed.reason });
}
