//! Client-to-server masking (RFC 6455 section 5.3).

/// XORs `buf` with the masking key, as if `buf` started `offset` bytes into
/// the payload. Masking and unmasking are the same operation.
///
/// `offset` lets a payload be unmasked in pieces as it arrives.
///
/// Written so that the compiler vectorizes it without `unsafe`: the body
/// works on fixed-size 32-byte blocks against a pre-rotated, repeated key,
/// which LLVM turns into SIMD XORs; the tail goes by u64, u32, then bytes.
/// `benches/mask.rs` compares it with `memcpy` of the same buffer.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Long buffers: bring the 32-byte blocks to an aligned address first.
    // Payloads follow a 6-, 8- or 14-byte header, so they rarely start
    // aligned, and unaligned vector stores cost ~15% here.
    if buf.len() >= 512 {
        let head = buf.as_ptr().align_offset(32).min(buf.len());
        let (pre, body) = buf.split_at_mut(head);
        mask_words(pre, key, offset);
        mask_words(body, key, offset + head);
    } else {
        mask_words(buf, key, offset);
    }
}

/// 32-byte blocks (vectorized), then the < 32-byte tail as u64 words and
/// bytes.
#[inline]
fn mask_words(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let tail = if buf.len() >= 32 {
        // The repeated key is built only when there are blocks: for a
        // 20-byte message it was a third of the masking cost.
        let mut wide = [0u8; 32];
        for (i, b) in wide.iter_mut().enumerate() {
            *b = key[i & 3];
        }
        let (blocks, tail) = buf.as_chunks_mut::<32>();
        for block in blocks {
            for i in 0..32 {
                block[i] ^= wide[i];
            }
        }
        tail
    } else {
        buf
    };
    // Words and the remainder start on a multiple of 4 bytes, so the key
    // lines up with them unrotated.
    let k = u32::from_ne_bytes(key);
    let w = u64::from(k) | (u64::from(k) << 32);
    let (words, rest) = tail.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ w).to_ne_bytes();
    }
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_the_rfc_definition_at_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..100 {
            for offset in 0..4 {
                let orig: Vec<u8> = (0..len as u8).collect();
                let mut a = orig.clone();
                let mut b = orig.clone();
                apply_mask(&mut a, key, offset);
                naive(&mut b, key, offset);
                assert_eq!(a, b, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_whole() {
        let key = [1, 2, 3, 4];
        let mut whole: Vec<u8> = (0..=255).collect();
        let mut pieces = whole.clone();
        apply_mask(&mut whole, key, 0);
        let (a, b) = pieces.split_at_mut(37);
        apply_mask(a, key, 0);
        apply_mask(b, key, 37);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn every_start_alignment_of_long_buffers() {
        let key = [0xa1, 0xb2, 0xc3, 0xd4];
        let backing: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        for len in [500, 512, 600, 1024, 4099, 65536] {
            for start in 0..33 {
                for offset in 0..4 {
                    let mut a = backing[start..start + len].to_vec();
                    let mut b = a.clone();
                    // Mask inside the backing buffer so the start address
                    // really varies.
                    let mut inside = backing.clone();
                    apply_mask(&mut inside[start..start + len], key, offset);
                    naive(&mut a, key, offset);
                    apply_mask(&mut b, key, offset);
                    assert_eq!(
                        &inside[start..start + len],
                        &a[..],
                        "len {len} start {start}"
                    );
                    assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn rfc_5_7_hello() {
        let mut p = *b"\x7f\x9f\x4d\x51\x58";
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&p, b"Hello");
    }
}
