//! Spans over OTLP: with `$OTEL_EXPORTER_OTLP_ENDPOINT` set, `wasm-orch run` exports a span
//! per run and per attempt (run id, tenant, node, attempt, status) to the collector, here a
//! plain HTTP listener on loopback that keeps what it is sent (OTLP/HTTP protobuf, whose
//! strings are stored as they are, so they can be found in the bytes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use wasm_orch_tests::{Scratch, cli, root};

/// A request the collector received: its path and body.
type Request = (String, Vec<u8>);

#[test]
fn runs_and_attempts_are_exported_as_spans_over_otlp() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let received: Arc<Mutex<Vec<Request>>> = Arc::default();
    let keep = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            keep.lock().expect("lock").push((path, body));
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let scratch = Scratch::new();
    let mut cmd = cli!();
    cmd.current_dir(root()).args([
        "run",
        "examples/calc.toml",
        "--plain",
        "--run-id",
        "traced-run-1",
    ]);
    let out = scratch
        .dirs(&mut cmd)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = received.lock().expect("lock");
    assert!(
        received.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        received.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let bytes: Vec<u8> = received.iter().flat_map(|(_, b)| b.clone()).collect();
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    for needle in [
        "wasm-orch",
        "run",
        "attempt",
        "traced-run-1",
        "left",
        "right",
        "product",
        "default",
        "succeeded",
    ] {
        assert!(
            has(needle),
            "no `{needle}` in what the collector received ({} bytes)",
            bytes.len()
        );
    }
}
