//! `probe`: tries what a sandboxed task may and may not do, and reports each result.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error};

#[derive(Deserialize)]
struct Params {
    /// Paths to try to read, after the write (relative ones are inside the working directory).
    #[serde(default)]
    read: Vec<String>,
    /// A file to write in the working directory, and leave there.
    write: Option<String>,
    /// An IPv4 address to try to connect to.
    connect: Option<Target>,
}

#[derive(Deserialize)]
struct Target {
    ip: [u8; 4],
    port: u16,
}

#[derive(Serialize)]
struct Report {
    env_vars: Vec<String>,
    args: Vec<String>,
    /// Path → the content read, or the error.
    reads: Vec<(String, Result<String, String>)>,
    write: Option<Result<String, String>>,
    connect: Option<Result<String, String>>,
}

struct Probe;

impl Agent for Probe {
    type Params = Params;
    type Output = Report;

    fn run(cx: Context<Params>) -> Result<Report, Error> {
        println!("probe: hello on stdout");
        eprintln!("probe: hello on stderr");
        let write = cx.params.write.as_ref().map(|path| {
            std::fs::File::create(path)
                .and_then(|mut f| f.write_all(b"written by probe"))
                .and_then(|()| std::fs::File::open(path))
                .and_then(|mut f| {
                    let mut text = String::new();
                    f.read_to_string(&mut text).map(|_| text)
                })
                .map_err(|e| e.to_string())
        });
        let reads = cx
            .params
            .read
            .iter()
            .map(|path| {
                (
                    path.clone(),
                    std::fs::read_to_string(path).map_err(|e| e.to_string()),
                )
            })
            .collect();
        let connect = cx.params.connect.map(tcp_connect);
        Ok(Report {
            env_vars: std::env::vars().map(|(k, _)| k).collect(),
            args: std::env::args().collect(),
            reads,
            write,
            connect,
        })
    }
}

/// Opens a TCP connection through `wasi:sockets`, as any guest language would.
fn tcp_connect(target: Target) -> Result<String, String> {
    use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasip2::sockets::{instance_network, tcp_create_socket};

    let network = instance_network::instance_network();
    let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| format!("create-tcp-socket: {e:?}"))?;
    let [a, b, c, d] = target.ip;
    let address = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: target.port,
        address: (a, b, c, d),
    });
    socket
        .start_connect(&network, address)
        .map_err(|e| format!("start-connect: {e:?}"))?;
    socket.subscribe().block();
    socket
        .finish_connect()
        .map(|_| "connected".to_owned())
        .map_err(|e| format!("finish-connect: {e:?}"))
}

wasm_orch_sdk::export!(Probe);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Probe;

    #[test]
    fn reports_its_write_and_reads_one_by_one() {
        let dir = std::env::temp_dir().join(format!("probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let written = dir.join("probe.txt");
        let missing = dir.join("missing.txt");
        let outcome = TestRun::new(json!({
            "write": written,
            "read": [written, missing],
        }))
        .run::<Probe>();
        let report: Value = outcome.output();
        assert_eq!(report["write"], json!({ "Ok": "written by probe" }));
        assert_eq!(report["reads"][0][1], json!({ "Ok": "written by probe" }));
        assert!(report["reads"][1][1]["Err"].is_string(), "{report}");
        assert!(report["connect"].is_null());
        std::fs::remove_dir_all(&dir).ok();
    }
}
