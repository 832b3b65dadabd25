//! Reading a component or an input file from the object store, where a read may stall.
//!
//! A worker that waits forever for an object holds its attempts forever: their in-progress
//! acks keep the queue from handing them to another worker. The benchmark caught one: a
//! worker's first component fetch never returned, and its 32 attempts never ended. A fetch
//! now gives up when no byte arrives for [`IDLE`], and is tried [`TRIES`] times; the
//! attempts of a fetch that failed end with a host error, which their retry policy may
//! retry.

use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a fetch may go without a byte arriving.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// How many times an object is fetched before the fetch is given up.
const TRIES: u32 = 3;

/// Object `name`'s bytes: at most `max + 1` of them (more than `max` is for the caller to
/// refuse, as too large).
pub(crate) async fn object(objects: &ObjectStore, name: &str, max: u64) -> Result<Vec<u8>, String> {
    let mut why = String::new();
    for _ in 0..TRIES {
        let got = match tokio::time::timeout(IDLE, objects.get(name)).await {
            Err(_) => Err(format!(
                "the object store did not answer within {} s",
                IDLE.as_secs()
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(object)) => bounded(object, max, IDLE).await,
        };
        match got {
            Ok(bytes) => return Ok(bytes),
            Err(e) => why = e,
        }
    }
    Err(format!("{why} ({TRIES} tries)"))
}

/// Reads `reader` to its end, or to `max + 1` bytes; fails if no byte comes for `idle`.
pub(crate) async fn bounded(
    mut reader: impl AsyncRead + Unpin,
    max: u64,
    idle: Duration,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    while bytes.len() as u64 <= max {
        // The loop's condition keeps this from going below zero; a bound of u64::MAX does
        // not overflow it.
        let room = usize::try_from((max - bytes.len() as u64).saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        let n = tokio::time::timeout(idle, reader.read(&mut chunk[..room]))
            .await
            .map_err(|_| {
                format!(
                    "the read stalled: no byte for {:.0} s after {} bytes",
                    idle.as_secs_f64(),
                    bytes.len()
                )
            })?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_that_stalls_is_given_up_and_says_how_far_it_got() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        writer.write_all(b"half").await.expect("written");
        // The writer stays open and sends nothing more: the read stalls.
        let read = bounded(reader, 1 << 20, Duration::from_millis(50)).await;
        let why = read.expect_err("given up");
        assert!(
            why.contains("stalled") && why.contains("after 4 bytes"),
            "{why}"
        );
        drop(writer);
    }

    #[tokio::test]
    async fn a_read_ends_with_its_source_or_one_byte_past_its_bound() {
        let whole = bounded(&b"twelve bytes"[..], 100, IDLE).await;
        assert_eq!(whole.as_deref(), Ok(&b"twelve bytes"[..]));
        let cut = bounded(&b"twelve bytes"[..], 5, IDLE).await;
        assert_eq!(
            cut.as_deref(),
            Ok(&b"twelve"[..]),
            "max + 1 bytes: too large"
        );
        let unbounded = bounded(&b"all of it"[..], u64::MAX, IDLE).await;
        assert_eq!(unbounded.as_deref(), Ok(&b"all of it"[..]));
        let big = vec![7u8; 200 << 10];
        let read = bounded(big.as_slice(), 150 << 10, IDLE)
            .await
            .expect("read");
        assert_eq!(read.len(), (150 << 10) + 1);
    }
}
