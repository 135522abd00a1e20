//! A small, slow, independent DEFLATE decoder (RFC 1951), after zlib's
//! `contrib/puff`. It exists so that compressed frames sent by the code
//! under test are checked by code that shares nothing with it, and so the
//! RFC 7692 window rules can be verified: every back-reference distance is
//! recorded and checked against the negotiated `*_max_window_bits`, and,
//! with `no_context_takeover`, against the start of the current message.

use std::fmt;

/// Why a payload did not inflate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflateError(pub String);

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, InflateError> {
    Err(InflateError(msg.into()))
}

const MAX_BITS: usize = 15;
const WINDOW: usize = 1 << 15;

const LBASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEXT: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl Bits<'_> {
    /// The next `n` (at most 24) bits without consuming them, zeros past
    /// the end; and how many of them are real.
    fn peek(&self, n: u32) -> (u32, usize) {
        let byte = self.pos / 8;
        let mut v: u32 = 0;
        for i in 0..4 {
            if let Some(b) = self.data.get(byte + i) {
                v |= u32::from(*b) << (8 * i);
            }
        }
        let avail = (self.data.len() * 8).saturating_sub(self.pos);
        ((v >> (self.pos % 8)) & ((1 << n) - 1), avail)
    }

    fn bits(&mut self, n: u32) -> Result<u32, InflateError> {
        if n == 0 {
            return Ok(0);
        }
        let (v, avail) = self.peek(n);
        if avail < n as usize {
            return err("compressed data ends inside a block");
        }
        self.pos += n as usize;
        Ok(v)
    }

    fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    fn at_end_after_align(&self) -> bool {
        self.pos.div_ceil(8) >= self.data.len()
    }
}

/// Codes up to this long are decoded with one table lookup.
const FAST_BITS: u32 = 9;

/// A canonical Huffman code (RFC 1951 3.2.2), decoded through a lookup
/// table of bit-reversed codes (DEFLATE packs Huffman codes starting with
/// their most significant bit) plus a bit-by-bit path for long codes.
struct Huffman {
    count: [u16; MAX_BITS + 1],
    symbol: Vec<u16>,
    /// Indexed by the next FAST_BITS input bits: (symbol, length), or
    /// length 0 when the code is longer.
    fast: Vec<(u16, u8)>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Self, InflateError> {
        let mut count = [0u16; MAX_BITS + 1];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        // Over-subscribed codes are invalid; incomplete ones are allowed
        // (a single distance code is legal).
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left <<= 1;
            left -= i32::from(c);
            if left < 0 {
                return err("over-subscribed Huffman code");
            }
        }
        let mut offs = [0u16; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[usize::from(offs[usize::from(l)])] = sym as u16;
                offs[usize::from(l)] += 1;
            }
        }
        // RFC 1951 3.2.2: the first code of each length.
        let mut next = [0u32; MAX_BITS + 2];
        let mut code = 0u32;
        for len in 1..=MAX_BITS {
            code = (code + u32::from(count[len - 1])) << 1;
            next[len] = code;
        }
        let mut fast = vec![(0u16, 0u8); 1 << FAST_BITS];
        for (sym, &l) in lengths.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let c = next[usize::from(l)];
            next[usize::from(l)] += 1;
            if u32::from(l) <= FAST_BITS {
                let rev = c.reverse_bits() >> (32 - u32::from(l));
                let mut i = rev as usize;
                while i < fast.len() {
                    fast[i] = (sym as u16, l);
                    i += 1 << l;
                }
            }
        }
        Ok(Self {
            count,
            symbol,
            fast,
        })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, InflateError> {
        let (peek, avail) = bits.peek(FAST_BITS);
        let (sym, len) = self.fast[peek as usize];
        if len > 0 && usize::from(len) <= avail {
            bits.pos += usize::from(len);
            return Ok(sym);
        }
        // puff's canonical decoder, a bit at a time.
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_BITS {
            code |= bits.bits(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - count < first {
                return Ok(self.symbol[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        err("invalid Huffman code")
    }
}

/// Inflates the messages of one direction of a permessage-deflate
/// connection, keeping the sliding window between messages.
#[derive(Debug, Default)]
pub struct Inflater {
    /// Up to 32 KiB of previous output, then the current message.
    buf: Vec<u8>,
    /// The largest back-reference distance seen so far.
    pub max_distance: usize,
    /// Back-references that reached into an earlier message.
    pub cross_message_refs: usize,
}

impl Inflater {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets previous messages.
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Inflates one message payload per RFC 7692 7.2.2: append
    /// `00 00 ff ff`, then inflate. Every distance must be within
    /// `1 << window_bits`; with `no_context_takeover`, the history is
    /// dropped first so any reference to an earlier message is an error.
    pub fn message(
        &mut self,
        payload: &[u8],
        window_bits: u8,
        no_context_takeover: bool,
    ) -> Result<Vec<u8>, InflateError> {
        if no_context_takeover {
            self.reset();
        }
        let mut data = payload.to_vec();
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let start = self.buf.len();
        let mut bits = Bits {
            data: &data,
            pos: 0,
        };
        let window = 1usize << window_bits;
        loop {
            let last = bits.bits(1)?;
            match bits.bits(2)? {
                0 => self.stored(&mut bits)?,
                1 => {
                    let (l, d) = fixed();
                    self.codes(&mut bits, &l, &d, start, window)?
                }
                2 => {
                    let (l, d) = dynamic(&mut bits)?;
                    self.codes(&mut bits, &l, &d, start, window)?
                }
                _ => return err("reserved block type 3"),
            }
            if last == 1 {
                // A final block may end the message; what follows is our
                // own 4-byte tail.
                break;
            }
            if bits.at_end_after_align() {
                break;
            }
        }
        let out = self.buf[start..].to_vec();
        if self.buf.len() > WINDOW {
            self.buf.drain(..self.buf.len() - WINDOW);
        }
        Ok(out)
    }

    fn stored(&mut self, bits: &mut Bits<'_>) -> Result<(), InflateError> {
        bits.align();
        let len = bits.bits(16)?;
        let nlen = bits.bits(16)?;
        if len != !nlen & 0xffff {
            return err("stored block length does not match its complement");
        }
        let start = bits.pos / 8;
        let Some(bytes) = bits.data.get(start..start + len as usize) else {
            return err("stored block ends early");
        };
        self.buf.extend_from_slice(bytes);
        bits.pos += 8 * len as usize;
        Ok(())
    }

    fn codes(
        &mut self,
        bits: &mut Bits<'_>,
        lencode: &Huffman,
        distcode: &Huffman,
        start: usize,
        window: usize,
    ) -> Result<(), InflateError> {
        loop {
            let sym = lencode.decode(bits)?;
            match sym {
                0..=255 => self.buf.push(sym as u8),
                256 => return Ok(()),
                _ => {
                    let i = usize::from(sym - 257);
                    if i >= 29 {
                        return err("invalid length symbol");
                    }
                    let len = usize::from(LBASE[i]) + bits.bits(u32::from(LEXT[i]))? as usize;
                    let ds = usize::from(distcode.decode(bits)?);
                    if ds >= 30 {
                        return err("invalid distance symbol");
                    }
                    let dist = usize::from(DBASE[ds]) + bits.bits(u32::from(DEXT[ds]))? as usize;
                    if dist > self.buf.len() {
                        return err(format!(
                            "distance {dist} reaches before the available history ({} bytes)",
                            self.buf.len()
                        ));
                    }
                    if dist > window {
                        return err(format!(
                            "distance {dist} exceeds the negotiated window of {window} bytes"
                        ));
                    }
                    if dist > self.buf.len() - start {
                        self.cross_message_refs += 1;
                    }
                    self.max_distance = self.max_distance.max(dist);
                    let from = self.buf.len() - dist;
                    if dist >= len {
                        self.buf.extend_from_within(from..from + len);
                    } else {
                        for i in 0..len {
                            let b = self.buf[from + i];
                            self.buf.push(b);
                        }
                    }
                }
            }
        }
    }
}

fn fixed() -> (Huffman, Huffman) {
    let mut lengths = [0u8; 288];
    for (i, l) in lengths.iter_mut().enumerate() {
        *l = match i {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
    }
    let l = Huffman::new(&lengths).expect("fixed literal code");
    let d = Huffman::new(&[5u8; 30]).expect("fixed distance code");
    (l, d)
}

fn dynamic(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman), InflateError> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlen = bits.bits(5)? as usize + 257;
    let ndist = bits.bits(5)? as usize + 1;
    let ncode = bits.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return err("bad dynamic block counts");
    }
    let mut cl = [0u8; 19];
    for &o in &ORDER[..ncode] {
        cl[o] = bits.bits(3)? as u8;
    }
    let clcode = Huffman::new(&cl)?;
    let mut lengths = vec![0u8; nlen + ndist];
    let mut i = 0;
    while i < nlen + ndist {
        let sym = clcode.decode(bits)?;
        if sym < 16 {
            lengths[i] = sym as u8;
            i += 1;
            continue;
        }
        let (value, repeat) = match sym {
            16 => {
                if i == 0 {
                    return err("repeat with no previous length");
                }
                (lengths[i - 1], 3 + bits.bits(2)? as usize)
            }
            17 => (0, 3 + bits.bits(3)? as usize),
            _ => (0, 11 + bits.bits(7)? as usize),
        };
        if i + repeat > nlen + ndist {
            return err("too many code lengths");
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return err("no end-of-block code");
    }
    Ok((
        Huffman::new(&lengths[..nlen])?,
        Huffman::new(&lengths[nlen..])?,
    ))
}
