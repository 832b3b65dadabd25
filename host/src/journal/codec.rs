//! How a batch of a run's events is stored: its JSON lines, LZ4-compressed, after their length
//! (4 bytes, little-endian).
//!
//! A batch's lines repeat themselves (the run id, the event names, the field names, the
//! timestamps' first digits): compressed they are about a sixth of the bytes, so the log, its
//! checkpoints and the database all shrink by as much, and a commit writes fewer pages. LZ4,
//! because it costs less time than the pages it saves (a few nanoseconds per byte each way).
//!
//! The length is read from the file, so it is checked before anything is allocated for it: a
//! damaged row is an error, never a huge allocation.

/// The longest batch a reader accepts (a writer's batches are far shorter: at most 8,192
/// events, each bounded).
const MOST: usize = 256 << 20;

/// A batch as stored.
pub(crate) fn pack(lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pack_into(lines, &mut out);
    out
}

/// A batch as stored, written into `out` (whose allocation the writer keeps from batch to
/// batch: a fresh one of a few hundred kilobytes would be faulted in every time).
pub(crate) fn pack_into(lines: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(lines.len()).unwrap_or(u32::MAX);
    out.clear();
    out.extend_from_slice(&len.to_le_bytes());
    out.resize(4 + lz4_flex::block::get_maximum_output_size(lines.len()), 0);
    match lz4_flex::block::compress_into(lines, &mut out[4..]) {
        Ok(written) => out.truncate(4 + written),
        // The output has the room LZ4 says it may need: this does not happen.
        Err(_) => *out = lz4_flex::compress_prepend_size(lines),
    }
}

/// A stored batch's lines, or why they cannot be read.
pub(crate) fn unpack(body: &[u8]) -> Result<Vec<u8>, String> {
    let (head, rest) = body
        .split_first_chunk::<4>()
        .ok_or("an event batch is shorter than its header")?;
    let len = u32::from_le_bytes(*head) as usize;
    // LZ4 expands a byte to at most 255: a longer claim is damage, refused before anything is
    // allocated for it (found by fuzzing: a damaged row could make a reader allocate 256 MiB).
    if len > MOST || len > rest.len().saturating_mul(255).saturating_add(16) {
        return Err(format!(
            "an event batch claims {len} bytes, more than its {} compressed bytes can hold",
            rest.len()
        ));
    }
    lz4_flex::decompress(rest, len)
        .map_err(|e| format!("an event batch does not decompress ({e})"))
        .and_then(|lines| {
            if lines.len() == len {
                Ok(lines)
            } else {
                Err("an event batch is not as long as its header says".into())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_and_a_damaged_one_is_an_error() {
        let lines = b"{\"seq\":1}\n{\"seq\":2}\n".repeat(100);
        let packed = pack(&lines);
        assert!(
            packed.len() < lines.len() / 4,
            "compressed: {}",
            packed.len()
        );
        assert_eq!(unpack(&packed).as_deref(), Ok(&lines[..]));
        assert!(unpack(&packed[..2]).is_err());
        assert!(unpack(&packed[..packed.len() - 3]).is_err());
        let mut huge = packed.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&huge).expect_err("refused").contains("claims"));
        let mut inflated = packed.clone();
        inflated[..4].copy_from_slice(&(200u32 << 20).to_le_bytes());
        assert!(unpack(&inflated).expect_err("refused").contains("claims"));
        // The most a batch can expand to is accepted.
        let zeros = vec![b'0'; 1 << 20];
        assert_eq!(unpack(&pack(&zeros)).map(|l| l.len()), Ok(1 << 20));
        let mut flipped = packed;
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        flipped[6] ^= 0x5a;
        assert_ne!(unpack(&flipped).as_deref(), Ok(&lines[..]));
    }
}
