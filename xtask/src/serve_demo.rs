//! The demo's last act: `wasm-orch serve` on loopback, driven as a client would drive it. A
//! token made with `wasm-orch token new`, calc registered with `PUT /v1/dags/calc`, executed,
//! followed over server-sent events to its end, its results read back, the server stopped with
//! SIGTERM. A plain HTTP/1.1 client over `TcpStream` (xtask has no dependencies).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Result, root, step, target_dir};

pub(crate) fn run(cli: &Path) -> Result {
    step("wasm-orch serve: calc over the HTTP API, followed over server-sent events");
    let dir = target_dir().join("demo-serve");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[tenants.demo]\nmax_concurrency = 8\n")
        .map_err(|e| format!("{}: {e}", policy.display()))?;
    let out = Command::new(cli)
        .args([
            "token", "new", "--tenant", "demo", "--name", "demo", "--policy",
        ])
        .arg(&policy)
        .output()
        .map_err(|e| format!("wasm-orch token new: {e}"))?;
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    if !out.status.success() || token.is_empty() {
        return Err(format!(
            "wasm-orch token new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    println!(
        "$ wasm-orch token new --tenant demo --policy {}",
        policy.display()
    );
    let mut server = Command::new(cli)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workflows-dir",
            "examples",
        ])
        .args(["--components-dir", "target/guests", "--policy"])
        .arg(&policy)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("wasm-orch serve: {e}"))?;
    let result = drive(&mut server, &token);
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().map_err(|e| e.to_string())?;
    result?;
    println!("server stopped on SIGTERM ({status})");
    Ok(())
}

fn drive(server: &mut std::process::Child, token: &str) -> Result {
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| format!("the server said {line:?}"))?
        .to_owned();
    println!("$ wasm-orch serve --listen 127.0.0.1:0 ...   # listening on http://{url}");
    let calc = std::fs::read_to_string(root().join("examples/calc.toml"))
        .map_err(|e| format!("examples/calc.toml: {e}"))?;
    let (status, body) = request(&url, "PUT", "/v1/dags/calc", token, &[], calc.as_bytes())?;
    println!("PUT /v1/dags/calc -> {status} {body}");
    let (status, body) = request(&url, "POST", "/v1/dags/calc/execute", token, &[], b"")?;
    println!("POST /v1/dags/calc/execute -> {status} {body}");
    let run = field(&body, "run_id").ok_or("no run_id")?;
    println!("GET /v1/runs/{run}/events (text/event-stream):");
    follow(&url, &run, token)?;
    let (status, body) = request(&url, "GET", &format!("/v1/runs/{run}"), token, &[], b"")?;
    let key = "\"outputs\":{\"product\":";
    let product = body
        .find(key)
        .map(|at| &body[at + key.len()..])
        .and_then(|rest| rest.split(['}', ',']).next())
        .unwrap_or("?");
    println!("GET /v1/runs/{run} -> {status}: product = {product}");
    if product != "21" {
        return Err(format!("calc over HTTP gave {product}, not 21"));
    }
    println!(
        "the dashboard: http://{url}/  (while a server runs; paste the token, or open /#token=...)"
    );
    Ok(())
}

/// Prints each event of the run's stream, one line each, to the end.
fn follow(url: &str, run: &str, token: &str) -> Result {
    let mut stream = connect(url)?;
    let head = format!(
        "GET /v1/runs/{run}/events HTTP/1.1\r\nHost: {url}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let (_, chunked) = read_head(&mut reader)?;
    let mut text = String::new();
    let body = read_body(&mut reader, chunked, |chunk| {
        text.push_str(&String::from_utf8_lossy(chunk));
        while let Some(at) = text.find("\n\n") {
            let event: String = text.drain(..at + 2).collect();
            let get = |k: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            let data = get("data:");
            let name = get("event:");
            let node = if name == "agent.plan.created" {
                String::new()
            } else {
                field(&data, "node").unwrap_or_default()
            };
            let status = field(&data, "status").unwrap_or_default();
            println!("  id {:>2}  {name:<26} {node} {status}", get("id:"));
        }
    });
    body.map(|_| ())
}

fn connect(url: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(url).map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn request(
    url: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    let mut stream = connect(url)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {url}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let (status, chunked) = read_head(&mut reader)?;
    let mut out = Vec::new();
    read_body(&mut reader, chunked, |chunk| out.extend_from_slice(chunk))?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// The status code, and whether the body is chunked.
fn read_head(reader: &mut impl BufRead) -> Result<(u16, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {line:?}"))?;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            return Ok((status, chunked));
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
}

fn read_body(reader: &mut impl BufRead, chunked: bool, mut sink: impl FnMut(&[u8])) -> Result {
    if !chunked {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map_err(|e| e.to_string())?;
        sink(&all);
        return Ok(());
    }
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
        let n =
            usize::from_str_radix(size.trim(), 16).map_err(|_| format!("bad chunk {size:?}"))?;
        if n == 0 {
            return Ok(());
        }
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
        sink(&chunk[..n]);
    }
}

/// A JSON string or number field's text, found without a JSON parser (the demo's needs).
fn field(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[at..].trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next().map(str::to_owned);
    }
    rest.split([',', '}']).next().map(|s| s.trim().to_owned())
}
