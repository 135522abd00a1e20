//! The receive path: frame headers, then payloads, then messages.
//!
//! Every rule about a frame header is checked in [`check_header`]; every
//! rule about the sequence of data frames (RFC 6455 5.4) in
//! [`start_data_frame`]. A frame that has only partly arrived is unmasked
//! and UTF-8 checked as far as it goes, so an invalid text message fails at
//! its first bad byte rather than when its last byte arrives.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::{Connection, Event, Fragment, MessageKind, State};
use crate::Role;
use crate::close::{CloseCode, CloseFrame};
use crate::config::MessageMode;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, apply_mask};
use crate::message::{Message, Utf8Bytes};
use crate::utf8::Utf8Validator;

/// Receive-side state of a connection.
#[derive(Debug, Default)]
pub(super) struct Receiver {
    /// A frame whose header was read but whose payload has not all arrived.
    pending: Option<Pending>,
    /// The data message in progress.
    message: Option<Incoming>,
}

#[derive(Debug)]
struct Pending {
    header: FrameHeader,
    /// Buffered mode: the frame stays at the front of the caller's buffer
    /// until complete, behind a header this long. Streaming mode: 0, the
    /// header has been consumed.
    head_len: usize,
    /// Payload bytes already unmasked (and, for uncompressed text, checked).
    done: usize,
}

#[derive(Debug)]
struct Incoming {
    kind: MessageKind,
    /// RSV1 was set on the first frame (RFC 7692 6).
    compressed: bool,
    /// Payload bytes so far, after inflating: what `max_message_size` limits.
    size: usize,
    utf8: Utf8Validator,
    /// Buffered mode: the message reassembled so far.
    buf: BytesMut,
}

pub(super) fn receive(
    conn: &mut Connection,
    buf: &mut BytesMut,
    now: Instant,
) -> Result<(), ProtocolError> {
    loop {
        if matches!(conn.state, State::Closed) {
            buf.clear();
            return Ok(());
        }
        let pending = match conn.receiver.pending.take() {
            Some(p) => p,
            None => {
                let Some((header, head_len)) = FrameHeader::parse(buf)? else {
                    return Ok(());
                };
                check_header(conn, &header)?;
                if whole_message(conn, buf, &header, head_len, now)? {
                    return Ok(());
                }
                if !header.opcode.is_control() {
                    start_data_frame(conn, &header)?;
                }
                Pending {
                    header,
                    head_len,
                    done: 0,
                }
            }
        };
        let streaming = conn.config.message_mode == MessageMode::Streaming
            && !pending.header.opcode.is_control();
        let events_before = conn.events.len();
        let complete = if streaming {
            stream_frame(conn, buf, pending, now)?
        } else {
            buffer_frame(conn, buf, pending, now)?
        };
        if !complete {
            return Ok(());
        }
        // Stop after a data message so the application sees it, and can
        // answer it, before anything later in the buffer fails the
        // connection: a peer that sends a message and then a bad frame
        // gets the echo before the Close (Autobahn's "strict" order).
        let delivered = conn
            .events
            .range(events_before..)
            .any(|e| matches!(e, Event::Message(_) | Event::Fragment(_)));
        if delivered {
            return Ok(());
        }
    }
}

/// The rules that depend on the header alone, in one place.
fn check_header(conn: &Connection, h: &FrameHeader) -> Result<(), ProtocolError> {
    // RFC 6455 5.2: "MUST be 0 unless an extension is negotiated that
    // defines meanings for non-zero values".
    if h.rsv2 || h.rsv3 || (h.rsv1 && conn.deflate.is_none()) {
        return Err(ProtocolError::ReservedBitsSet);
    }
    // RFC 7692 6.1: RSV1 is set on the first frame of a message only, and
    // "An endpoint MUST NOT set the 'Per-Message Compressed' bit of control
    // frames and non-first fragments of a data message."
    if h.rsv1 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
        return Err(ProtocolError::UnexpectedCompressionBit);
    }
    // RFC 6455 5.1: "The server MUST close the connection upon receiving a
    // frame that is not masked" and "A client MUST close a connection if it
    // detects a masked frame."
    match (conn.role, h.mask.is_some()) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
        _ => {}
    }
    if h.opcode.is_control() {
        // RFC 6455 5.5: "All control frames MUST have a payload length of
        // 125 bytes or less and MUST NOT be fragmented."
        if !h.fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if h.payload_len > 125 {
            return Err(ProtocolError::ControlFrameTooLong);
        }
    } else if h.payload_len > conn.config.max_frame_size as u64 {
        return Err(ProtocolError::FrameTooBig);
    }
    Ok(())
}

/// The common case in one step: an unfragmented, uncompressed data message
/// whose whole frame is in `buf`, with no message in progress. Delivers it
/// and returns `true`; `false` leaves everything to the general path. Same
/// checks and results as that path, without its bookkeeping (about a third
/// of the instructions per small echoed message).
fn whole_message(
    conn: &mut Connection,
    buf: &mut BytesMut,
    h: &FrameHeader,
    head_len: usize,
    now: Instant,
) -> Result<bool, ProtocolError> {
    let kind = match h.opcode {
        OpCode::Text => MessageKind::Text,
        OpCode::Binary => MessageKind::Binary,
        _ => return Ok(false),
    };
    // Checked against max_frame_size already, so it fits a usize.
    let len = h.payload_len as usize;
    if !h.fin
        || h.rsv1
        || conn.receiver.message.is_some()
        || conn.config.message_mode == MessageMode::Streaming
        || buf.len() - head_len < len
    {
        return Ok(false);
    }
    if len > conn.config.max_message_size {
        return Err(ProtocolError::MessageTooBig);
    }
    let payload = &mut buf[head_len..head_len + len];
    if let Some(key) = h.mask {
        apply_mask(payload, key, 0);
    }
    if kind == MessageKind::Text {
        crate::utf8::validate(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
    }
    buf.advance(head_len);
    let bytes = buf.split_to(len).freeze();
    conn.keepalive.received_data(&conn.config, now);
    conn.events.push_back(Event::Message(match kind {
        MessageKind::Text => Message::Text(Utf8Bytes::from_validated(bytes)),
        MessageKind::Binary => Message::Binary(bytes),
    }));
    Ok(true)
}

/// The rules on the sequence of data frames (RFC 6455 5.4).
fn start_data_frame(conn: &mut Connection, h: &FrameHeader) -> Result<(), ProtocolError> {
    let max = conn.config.max_message_size;
    // Checked against max_frame_size already, so it fits a usize.
    let len = h.payload_len as usize;
    let msg = match h.opcode {
        OpCode::Continuation => conn
            .receiver
            .message
            .as_mut()
            .ok_or(ProtocolError::UnexpectedContinuation)?,
        _ => {
            if conn.receiver.message.is_some() {
                return Err(ProtocolError::ExpectedContinuation);
            }
            let kind = if h.opcode == OpCode::Text {
                MessageKind::Text
            } else {
                MessageKind::Binary
            };
            conn.receiver.message.insert(Incoming {
                kind,
                compressed: h.rsv1,
                size: 0,
                utf8: Utf8Validator::new(),
                buf: BytesMut::new(),
            })
        }
    };
    // Uncompressed sizes are known from the header: refuse before the
    // payload arrives. Compressed ones are counted while inflating.
    if !msg.compressed {
        if len > max - msg.size {
            return Err(ProtocolError::MessageTooBig);
        }
        msg.size += len;
    }
    Ok(())
}

/// Buffered mode (and every control frame): wait for the whole frame, then
/// split it off without copying. Returns whether the frame was complete.
fn buffer_frame(
    conn: &mut Connection,
    buf: &mut BytesMut,
    mut p: Pending,
    now: Instant,
) -> Result<bool, ProtocolError> {
    let len = p.header.payload_len as usize;
    let arrived = buf.len().saturating_sub(p.head_len).min(len);
    if arrived > p.done {
        let new = &mut buf[p.head_len + p.done..p.head_len + arrived];
        if let Some(key) = p.header.mask {
            apply_mask(new, key, p.done);
        }
        if !p.header.opcode.is_control() {
            check_plain_text(conn, new)?;
        }
        p.done = arrived;
    }
    if arrived < len {
        conn.receiver.pending = Some(p);
        return Ok(false);
    }
    buf.advance(p.head_len);
    let payload = buf.split_to(len);
    if p.header.opcode.is_control() {
        on_control(conn, p.header.opcode, payload.freeze())?;
    } else {
        on_data(conn, payload, p.header.fin, now)?;
    }
    Ok(true)
}

/// Streaming mode: hand out each piece of a data frame as it arrives.
/// Returns whether the frame was complete.
fn stream_frame(
    conn: &mut Connection,
    buf: &mut BytesMut,
    mut p: Pending,
    now: Instant,
) -> Result<bool, ProtocolError> {
    buf.advance(std::mem::take(&mut p.head_len));
    let len = p.header.payload_len as usize;
    let take = (len - p.done).min(buf.len());
    if take == 0 && p.done < len {
        conn.receiver.pending = Some(p);
        return Ok(false);
    }
    let mut chunk = buf.split_to(take);
    if let Some(key) = p.header.mask {
        apply_mask(&mut chunk, key, p.done);
    }
    check_plain_text(conn, &chunk)?;
    p.done += take;
    let end_of_frame = p.done == len;
    let fin = end_of_frame && p.header.fin;
    if !end_of_frame {
        conn.receiver.pending = Some(p);
    }
    on_data(conn, chunk, fin, now)?;
    Ok(end_of_frame)
}

/// UTF-8 check of uncompressed text as it arrives; compressed text is
/// checked after inflating, in [`on_data`].
fn check_plain_text(conn: &mut Connection, bytes: &[u8]) -> Result<(), ProtocolError> {
    match &mut conn.receiver.message {
        Some(m) if m.kind == MessageKind::Text && !m.compressed => {
            m.utf8.feed(bytes).map_err(|_| ProtocolError::InvalidUtf8)
        }
        _ => Ok(()),
    }
}

/// A data payload: a whole frame (buffered) or a piece of one (streaming).
/// `fin` marks the end of the message.
fn on_data(
    conn: &mut Connection,
    payload: BytesMut,
    fin: bool,
    now: Instant,
) -> Result<(), ProtocolError> {
    let streaming = conn.config.message_mode == MessageMode::Streaming;
    let max = conn.config.max_message_size;
    let Some(msg) = conn.receiver.message.as_mut() else {
        // start_data_frame always sets it before a payload is read.
        return Err(ProtocolError::UnexpectedContinuation);
    };

    let data = if msg.compressed {
        let Some(deflate) = conn.deflate.as_mut() else {
            return Err(ProtocolError::ReservedBitsSet);
        };
        let mut fresh = BytesMut::new();
        let out = if streaming { &mut fresh } else { &mut msg.buf };
        let before = out.len();
        deflate.decompress(&payload, fin, out, max - msg.size)?;
        msg.size += out.len() - before;
        if msg.kind == MessageKind::Text {
            msg.utf8
                .feed(&out[before..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        fresh
    } else if streaming || (fin && msg.buf.is_empty()) {
        // A single-frame message, or a streamed piece: no copy at all.
        payload
    } else if msg.buf.is_empty() {
        msg.buf = payload;
        BytesMut::new()
    } else {
        msg.buf.extend_from_slice(&payload);
        BytesMut::new()
    };

    if fin && msg.kind == MessageKind::Text {
        // RFC 6455 8.1: a message that ends inside a code point is invalid.
        msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
    }

    if streaming {
        let kind = msg.kind;
        if fin {
            conn.receiver.message = None;
            conn.keepalive.received_data(&conn.config, now);
        }
        if fin || !data.is_empty() {
            conn.events.push_back(Event::Fragment(Fragment {
                kind,
                payload: data.freeze(),
                fin,
            }));
        }
    } else if fin {
        let Some(msg) = conn.receiver.message.take() else {
            return Ok(());
        };
        let bytes = if msg.compressed || !msg.buf.is_empty() {
            msg.buf.freeze()
        } else {
            data.freeze()
        };
        let message = match msg.kind {
            MessageKind::Text => Message::Text(Utf8Bytes::from_validated(bytes)),
            MessageKind::Binary => Message::Binary(bytes),
        };
        conn.keepalive.received_data(&conn.config, now);
        conn.events.push_back(Event::Message(message));
    }
    Ok(())
}

fn on_control(conn: &mut Connection, opcode: OpCode, payload: Bytes) -> Result<(), ProtocolError> {
    match opcode {
        OpCode::Ping => {
            // RFC 6455 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST
            // send a Pong frame in response ... [with] identical Application
            // data", unless it already sent a Close frame.
            if matches!(conn.state, State::Open) {
                conn.queue_control(OpCode::Pong, payload.clone());
            }
            conn.events.push_back(Event::Ping(payload));
        }
        OpCode::Pong => conn.events.push_back(Event::Pong(payload)),
        OpCode::Close => {
            let frame = CloseFrame::parse(&payload)?;
            if matches!(conn.state, State::Open) {
                // RFC 6455 5.5.1: "If an endpoint receives a Close frame and
                // did not previously send a Close frame, the endpoint MUST
                // send a Close frame in response ... typically echoing the
                // status code it received."
                let reply = match &frame {
                    Some(f) => CloseFrame::new(f.code, "").encode(),
                    None => Bytes::new(),
                };
                conn.queue_control(OpCode::Close, reply);
            }
            conn.state = State::Closed;
            conn.events.push_back(Event::Closed(
                frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NO_STATUS_RECEIVED, "")),
            ));
        }
        // Data opcodes never reach here: the caller routes on is_control.
        OpCode::Continuation | OpCode::Text | OpCode::Binary => {}
    }
    Ok(())
}
