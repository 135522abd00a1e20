#!/usr/bin/env python3
"""Writes the committed seed inputs, fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/make_seeds.py. The seeds are the examples
of RFC 6455 (5.7, 1.3) and RFC 7692 (7.2.3), laid out as each target reads
its input (see the doc comment at the top of each fuzz_targets/*.rs).

connection_ops reads its input through `arbitrary`; `Arb` below writes
that format (arbitrary 1.x: integers little-endian, enum variants as
u32 * count >> 32, collections as a continue-byte before each element,
string lengths from the end of the data). After changing the target's
types, update the encoders here and check each seed with
`cargo +nightly fuzz fmt connection_ops fuzz/corpus/connection_ops/seed-...`.
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(bytes(data))


# ----- frames ----------------------------------------------------------------

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # the key of RFC 6455 5.7


def frame(opcode, payload=b"", fin=True, rsv1=False, mask=None):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_body(code, reason=b""):
    return struct.pack(">H", code) + reason


# RFC 6455 5.7, as a server receives them (masked) and a client (unmasked).
def rfc_5_7(mask):
    return {
        "text-hello": frame(0x1, b"Hello", mask=mask),
        "fragmented-hello": frame(0x1, b"Hel", fin=False, mask=mask)
        + frame(0x0, b"lo", mask=mask),
        "ping-pong": frame(0x9, b"Hello", mask=mask) + frame(0xA, b"Hello", mask=mask),
        "binary-256": frame(0x2, bytes(range(256)), mask=mask),
        "close-1000": frame(0x8, close_body(1000, b"bye"), mask=mask),
    }


def frame_header():
    write("frame_header", "rfc-text-hello", frame(0x1, b"Hello"))
    write("frame_header", "rfc-masked-hello", frame(0x1, b"Hello", mask=MASK))
    write("frame_header", "rfc-fragment", frame(0x1, b"Hel", fin=False))
    write("frame_header", "rfc-binary-256", frame(0x2, bytes(256))[:4])
    write("frame_header", "rfc-binary-64k", frame(0x2, bytes(65536))[:10])
    write("frame_header", "masked-close", frame(0x8, close_body(1000), mask=MASK))
    write("frame_header", "deflate-rsv1", frame(0x1, bytes.fromhex("f248cdc9c90700"), rsv1=True))
    # Non-minimal length: 5 in 16 bits (valid to parse, encodes shorter).
    write("frame_header", "non-minimal-length", bytes([0x82, 126, 0, 5]))


# ----- connection_receive ------------------------------------------------------

STREAMING, SMALL, DEFLATE = 1, 2, 4
HELLO_DEFLATED = bytes.fromhex("f248cdc9c90700")  # RFC 7692 7.2.3.1


def conn_input(flags, sizes, stream):
    return bytes([flags, len(sizes)]) + bytes(sizes) + stream


def connection_receive():
    for side, mask in (("server", MASK), ("client", None)):
        frames = rfc_5_7(mask)
        conversation = (
            frames["text-hello"]
            + frames["fragmented-hello"]
            + frames["ping-pong"]
            + frames["binary-256"]
            + frames["close-1000"]
        )
        write("connection_receive", f"{side}-conversation", conn_input(0, [], conversation))
        write("connection_receive", f"{side}-split-3-7", conn_input(0, [3, 7], conversation))
        write(
            "connection_receive",
            f"{side}-streaming",
            conn_input(STREAMING, [5, 1, 200], conversation),
        )
        # A 2000-byte frame over the 1 KiB limit: fails with 1009.
        write(
            "connection_receive",
            f"{side}-too-big",
            conn_input(SMALL, [], frame(0x2, bytes(2000), mask=mask)),
        )
        # Invalid UTF-8 in a text message: fails with 1007.
        write(
            "connection_receive",
            f"{side}-bad-utf8",
            conn_input(0, [2], frame(0x1, b"caf\xc3\x28", mask=mask)),
        )
        # RFC 7692 7.2.3: "Hello" compressed, as one frame, as two
        # fragments, and twice with context takeover.
        deflated = (
            frame(0x1, HELLO_DEFLATED, rsv1=True, mask=mask)
            + frame(0x1, HELLO_DEFLATED[:3], fin=False, rsv1=True, mask=mask)
            + frame(0x0, HELLO_DEFLATED[3:], mask=mask)
            + frame(0x1, bytes.fromhex("f20011 0000".replace(" ", "")), rsv1=True, mask=mask)
        )
        write(
            "connection_receive",
            f"{side}-deflate",
            conn_input(DEFLATE | (7 << 5), [4], deflated),
        )


# ----- handshakes --------------------------------------------------------------

REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
)


def handshakes():
    write("handshake_request", "rfc-6455-1.3", REQUEST + b"\r\n")
    write(
        "handshake_request",
        "deflate-offer",
        REQUEST
        + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
        b"permessage-deflate\r\n\r\n",
    )
    write(
        "handshake_request",
        "frames-after-head",
        REQUEST + b"\r\n" + frame(0x1, b"Hello", mask=MASK),
    )
    write(
        "handshake_request",
        "plain-http",
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    )

    write(
        "handshake_response",
        "rfc-6455-1.3",
        RESPONSE + b"Sec-WebSocket-Protocol: chat\r\n\r\n",
    )
    write(
        "handshake_response",
        "deflate",
        RESPONSE
        + b"Sec-WebSocket-Protocol: superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; "
        b"client_max_window_bits=12\r\n\r\n",
    )
    write(
        "handshake_response",
        "frames-after-head",
        RESPONSE + b"\r\n" + frame(0x1, b"Hello"),
    )
    write(
        "handshake_response",
        "forbidden",
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n",
    )


# ----- inflate -----------------------------------------------------------------


def pieces(*ps):
    out = b""
    for data, fin in ps:
        assert len(data) < 127
        out += bytes([(0x80 if fin else 0) | len(data)]) + data
    return out


def inflate_input(params, limit, level, body):
    return bytes([params, limit, level]) + body


def inflate():
    h = HELLO_DEFLATED
    # RFC 7692 7.2.3.1: one message, and as two fragments.
    write("inflate", "rfc-hello", inflate_input(0xFF, 1, 1, pieces((h, True))))
    write("inflate", "rfc-fragments", inflate_input(0xFF, 1, 6, pieces((h[:3], False), (h[3:], True))))
    # 7.2.3.2: the second "Hello" refers back into the first (context takeover).
    write(
        "inflate",
        "rfc-takeover",
        inflate_input(0xFC, 1, 9, pieces((h, True), (bytes.fromhex("f200110000"), True))),
    )
    # 7.2.3.3: a stored block; 7.2.3.4: BFINAL set; 7.2.3.5: two blocks.
    write("inflate", "rfc-stored", inflate_input(0xFF, 1, 0, pieces((bytes.fromhex("0005 00faff 48656c6c6f 00".replace(" ", "")), True))))
    write("inflate", "rfc-bfinal", inflate_input(0xFF, 1, 1, pieces((bytes.fromhex("f348cdc9c9070000"), True))))
    write("inflate", "rfc-two-blocks", inflate_input(0xFF, 1, 1, pieces((bytes.fromhex("f24805000000ffffcac9c90700"), True))))
    # 7.2.3.6: an empty message; and "Hello" with no room at all.
    write("inflate", "rfc-empty", inflate_input(0x03, 1, 1, pieces((b"\x00", True))))
    write("inflate", "over-limit", inflate_input(0xFF, 0, 1, pieces((h, True))))


# ----- connection_ops ----------------------------------------------------------


class Arb:
    """Writes bytes that `arbitrary` 1.x reads back as the given values."""

    def __init__(self):
        self.front = bytearray()
        self.back = bytearray()  # length bytes, read from the end

    def u8(self, v):
        self.front.append(v & 0xFF)

    def bool(self, v):
        self.u8(1 if v else 0)

    def u16(self, v):
        self.front += struct.pack("<H", v)

    def u32(self, v):
        self.front += struct.pack("<I", v)

    def variant(self, index, count):
        self.u32(-(-(index << 32) // count))  # smallest x with x * count >> 32 == index

    def option(self, value, write):
        self.bool(value is not None)
        if value is not None:
            write(value)

    def bytes_vec(self, data):
        for b in data:
            self.bool(True)
            self.u8(b)
        self.bool(False)

    def string(self, s):
        data = s.encode()
        self.back.append(len(data))
        self.front += data

    def finish(self):
        data = bytes(self.front) + bytes(reversed(self.back))
        # Lengths are read as one byte only while at most 256 bytes remain.
        assert len(data) <= 256, len(data)
        return data


OPS = [
    "Receive", "ReceiveFrame", "ReceiveCompressed", "ReceiveClose", "ReceiveEof",
    "Send", "SendFrame", "Ping", "Pong", "Close", "HandleTimeout", "FireTimer",
    "PollTransmit", "PollAll", "Write", "SendPrepared",
]
WIRE = ["Continuation", "Text", "Binary", "Close", "Ping", "Pong"]


def setup(a, client=False, streaming=False, small=False, ping=None, pong=0,
          idle=None, close=0, seed=0, deflate=None):
    a.bool(client)
    a.bool(streaming)
    a.bool(small)
    a.option(ping, a.u16)
    a.u16(pong)
    a.option(idle, a.u16)
    a.u16(close)
    a.u32(seed)

    def deflate_setup(d):
        snct, cnct, sbits, cbits, level, threshold = d
        a.bool(snct)
        a.bool(cnct)
        a.u8(sbits - 8)
        a.u8(cbits - 8)
        a.u8(level)
        a.u8(threshold)

    a.option(deflate, deflate_setup)


def op(a, name, *args):
    a.bool(True)  # one more op
    a.variant(OPS.index(name), len(OPS))
    if name == "Receive":
        a.bytes_vec(args[0])
    elif name == "ReceiveFrame":
        opcode, fin, rsv1, payload = args
        a.variant(WIRE.index(opcode), len(WIRE))
        a.bool(fin)
        a.bool(rsv1)
        a.bytes_vec(payload)
    elif name in ("ReceiveCompressed", "Send", "SendPrepared"):
        data(a, args[0])
    elif name == "ReceiveClose":
        def body(b):
            a.u16(b[0])
            a.string(b[1])
        a.option(args[0], body)
    elif name == "SendFrame":
        binary, payload, fin = args
        a.bool(binary)
        a.string(payload)
        a.bool(fin)
    elif name in ("Ping", "Pong"):
        a.bytes_vec(args[0])
    elif name == "Close":
        a.u16(args[0])
        a.string(args[1])
    elif name == "HandleTimeout":
        a.u16(args[0])
    elif name == "Write":
        a.u8(args[0])
        a.u16(args[1])


def data(a, value):
    if isinstance(value, str):
        a.variant(0, 2)
        a.string(value)
    else:
        a.variant(1, 2)
        a.bytes_vec(value)


def connection_ops():
    # A server: a message in, an echo out, a ping, the peer closes.
    a = Arb()
    setup(a)
    op(a, "ReceiveFrame", "Text", True, False, b"Hello")
    op(a, "PollAll")
    op(a, "Send", "Hello")
    op(a, "Ping", b"p")
    op(a, "PollAll")
    op(a, "ReceiveClose", (1000, "bye"))
    op(a, "Send", b"\x01")  # after Closed: an error
    op(a, "PollAll")
    write("connection_ops", "server-echo-close", a.finish())

    # A client with keepalive: the ping goes out, no pong, 1011.
    a = Arb()
    setup(a, client=True, ping=100, pong=50, idle=1000, close=200, seed=7)
    op(a, "FireTimer")
    op(a, "PollAll")
    op(a, "HandleTimeout", 60)
    op(a, "PollAll")
    op(a, "Send", "late")
    write("connection_ops", "client-keepalive-timeout", a.finish())

    # A streaming server with small limits: fragments both ways, a control
    # frame in between, then our close and its timeout.
    a = Arb()
    setup(a, streaming=True, small=True, close=300)
    op(a, "SendFrame", False, "He", False)
    op(a, "Ping", b"")
    op(a, "SendFrame", True, "llo", True)
    op(a, "PollTransmit")
    op(a, "ReceiveFrame", "Text", False, False, b"Hel")
    op(a, "ReceiveFrame", "Ping", True, False, b"x")
    op(a, "ReceiveFrame", "Continuation", True, False, b"lo")
    op(a, "PollAll")
    op(a, "Close", 1000, "done")
    op(a, "PollAll")
    op(a, "FireTimer")
    op(a, "PollAll")
    op(a, "ReceiveEof")
    write("connection_ops", "server-streaming-close-timeout", a.finish())

    # A client with permessage-deflate: compressed messages both ways.
    a = Arb()
    setup(a, client=True, seed=1, deflate=(False, True, 10, 12, 1, 0))
    op(a, "Send", "Hello, Hello, Hello")
    op(a, "ReceiveCompressed", "Hello")
    op(a, "ReceiveCompressed", "Hello")
    op(a, "SendFrame", True, "abcabcabc", False)
    op(a, "SendFrame", True, "abc", True)
    op(a, "PollAll")
    op(a, "Receive", frame(0x1, HELLO_DEFLATED, rsv1=True))
    op(a, "PollAll")
    write("connection_ops", "client-deflate", a.finish())

    # A server with permessage-deflate, no context takeover on its side:
    # prepared messages (shared frames) between its own compressed ones,
    # and a prepared one refused inside a fragmented message.
    a = Arb()
    setup(a, deflate=(True, True, 10, 15, 1, 0))
    op(a, "SendPrepared", "news, news, news, news")
    op(a, "Send", "Hello, Hello, Hello")
    op(a, "SendPrepared", b"\x00" * 40)
    op(a, "SendFrame", False, "abcabc", False)
    op(a, "SendPrepared", "refused")
    op(a, "SendFrame", False, "abc", True)
    op(a, "ReceiveCompressed", "Hello, Hello")
    op(a, "PollAll")
    write("connection_ops", "server-deflate-prepared", a.finish())

    # A client writing through transmit_slices, a few bytes at a time, with
    # poll_transmit in between (it must finish the partial frame first).
    a = Arb()
    setup(a, client=True, seed=3)
    op(a, "Send", b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09")
    op(a, "Ping", b"hi")
    op(a, "Write", 1, 1)
    op(a, "Write", 3, 5)
    op(a, "Send", "Hello")
    op(a, "PollTransmit")
    op(a, "Write", 4, 9)
    op(a, "Close", 1000, "bye")
    op(a, "Write", 255, 65535)
    op(a, "PollAll")
    write("connection_ops", "client-partial-writes", a.finish())

    # Raw RFC bytes, then a protocol error (unmasked frame to a server).
    a = Arb()
    setup(a)
    op(a, "Receive", frame(0x1, b"Hello", mask=MASK))
    op(a, "Receive", frame(0x1, b"Hello"))
    op(a, "PollAll")
    op(a, "Close", 1000, "")
    write("connection_ops", "server-protocol-error", a.finish())


# ----- the push server: commands and API bodies -------------------------------


def server_command():
    deep = "[" * 70 + "1" + "]" * 70
    lines = [
        '{"id":2,"subscribe":{"channel":"chat:a"}}',
        '{"id":3,"publish":{"channel":"chat:a","data":{"text":"hi","n":[1,2.5e300,-0]}}}',
        '{"id":4,"history":{"channel":"chat:a","limit":10}}',
        '{"id":5,"presence":{"channel":"chat:a"}}',
        '{"id":6,"subscribe":{"channel":"chat:a","recover":true,"epoch":"x","offset":18446744073709551615}}',
        '{"id":7,"publish":{"channel":"chat:a","data":' + deep + '}}',
        '{"id":8,"unsubscribe":{"channel":"chat:a"}}',
        '{"id":9,"ping":{},"presence":{"channel":"chat:a"}}',
        '{"id":10,"ping":{"bogus":1}}',
        '{"id":11,"connect":{}}',
        '{"id":4294967296,"ping":{}}',
        'not json',
    ]
    write("server_command", "session", "\n".join(lines).encode())
    write("server_command", "game", b'{"id":2,"subscribe":{"channel":"game:arena"}}\n'
          b'{"id":3,"publish":{"channel":"game:arena","data":{"move":"up"}}}')


def api_body():
    write("api_body", "publish", b"\x00" + b'{"channel":"chat:a","data":{"text":"hi"}}')
    write("api_body", "publish-deep", b"\x00" + b'{"channel":"chat:a","data":' + b"[" * 200 + b"]" * 200 + b"}")
    write("api_body", "broadcast", b"\x01" + b'{"channels":["chat:a","chat:b","chat:a"],"data":1e999}')
    write("api_body", "disconnect", b"\x02" + b'{"client":"1","reason":"' + b"x" * 300 + b'"}')


if __name__ == "__main__":
    frame_header()
    connection_receive()
    handshakes()
    inflate()
    connection_ops()
    server_command()
    api_body()
