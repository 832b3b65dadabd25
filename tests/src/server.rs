//! A real `wasm-orch serve` process on loopback, for the service's tests and benchmarks: it
//! is started with a policy whose API tokens were made by `wasm-orch token new`, reached over
//! HTTP with reqwest, and killed (or stopped with SIGTERM) like any server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{Scratch, guests, shared_cache};

/// Tenants the test policy names, each with a token.
pub const TENANTS: [&str; 2] = ["acme", "trial"];

#[derive(Debug)]
pub struct Server {
    bin: PathBuf,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    starts: u32,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub tokens: BTreeMap<String, String>,
    /// A worker's token (`token new --worker`): it leases attempts over HTTP, nothing else.
    pub worker_token: String,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a server whose state, policy and logs live in `scratch`, DAGs' components in
    /// the guests directory. `extra`: more `serve` arguments.
    pub fn start(bin: &str, scratch: &Scratch, extra: &[&str]) -> Self {
        Self::start_with_policy(bin, scratch, "", extra)
    }

    /// As [`Server::start`], with `policy` (TOML) before the tenants' sections.
    pub fn start_with_policy(bin: &str, scratch: &Scratch, policy: &str, extra: &[&str]) -> Self {
        let dir = scratch.path().to_path_buf();
        let policy_text = format!(
            "{policy}\n[tenants.acme]\nmax_concurrency = 8\n\n[tenants.trial]\nmax_concurrency = 4\n"
        );
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, policy_text).expect("write the policy");
        let token_new = |args: &[&str]| {
            let out = Command::new(bin)
                .args(["token", "new"])
                .args(args)
                .arg("--policy")
                .arg(&policy)
                .output()
                .expect("run `token new`");
            assert!(out.status.success(), "token new: {out:?}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let mut tokens = BTreeMap::new();
        for tenant in TENANTS {
            tokens.insert(tenant.to_owned(), token_new(&["--tenant", tenant]));
        }
        let worker_token = token_new(&["--worker"]);
        let mut server = Self {
            bin: PathBuf::from(bin),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            starts: 0,
            url: String::new(),
            tokens,
            worker_token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client"),
        };
        server.spawn();
        server
    }

    /// The server's log of its `n`th start (1 for the first).
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("server-{n}.log"))).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts)))
            .expect("a log file");
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--workflows-dir"])
            .arg(&self.dir)
            .arg("--components-dir")
            .arg(guests())
            .arg("--policy")
            .arg(self.dir.join("policy.toml"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--cache-dir")
            .arg(shared_cache())
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start `wasm-orch serve`");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read its first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the server said {line:?}; log:\n{}", self.log(self.starts)))
            .to_owned();
        self.url = url;
        self.child = Some(child);
    }

    /// Waits until the server says it is ready (`/readyz`: it has resumed what it had left,
    /// and listens for plans when it has a state bus).
    pub async fn ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.http.get(format!("{}/readyz", self.url)).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server was not ready within a minute; log:\n{}",
                self.log(self.starts)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL: nothing of it runs on), then waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY-free: a plain syscall through libc on a pid this process started.
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts the server again on the same state (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn token(&self, tenant: &str) -> &str {
        self.tokens.get(tenant).map_or("", String::as_str)
    }

    pub fn request(
        &self,
        tenant: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token(tenant))
    }

    /// Sends a request and reads its JSON body (`Value::Null` when it is not JSON).
    pub async fn send(builder: reqwest::RequestBuilder) -> (u16, Value) {
        let response = builder.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, tenant: &str, path: &str) -> (u16, Value) {
        Self::send(self.request(tenant, reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, tenant: &str, path: &str) -> (u16, Value) {
        Self::send(self.request(tenant, reqwest::Method::POST, path)).await
    }

    /// Registers a DAG; `{guests}` in the text becomes the guests directory.
    pub async fn put_dag(&self, tenant: &str, dag: &str, toml: &str) -> (u16, Value) {
        let text = toml.replace("{guests}", &guests().display().to_string());
        Self::send(
            self.request(tenant, reqwest::Method::PUT, &format!("/v1/dags/{dag}"))
                .body(text),
        )
        .await
    }

    /// Executes a DAG; the new run's id.
    pub async fn execute(&self, tenant: &str, dag: &str) -> String {
        let (status, body) = self.post(tenant, &format!("/v1/dags/{dag}/execute")).await;
        assert_eq!(status, 202, "execute {dag}: {body}");
        body["run_id"].as_str().unwrap_or_default().to_owned()
    }

    /// Opens a run's event stream (after event `last`, if given).
    pub async fn events(&self, tenant: &str, run: &str, last: Option<u64>) -> Sse {
        let mut request = self.request(
            tenant,
            reqwest::Method::GET,
            &format!("/v1/runs/{run}/events"),
        );
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = request.send().await.expect("the server answers");
        assert_eq!(response.status().as_u16(), 200, "events of {run}");
        Sse {
            response,
            buf: String::new(),
        }
    }

    /// Waits until the run's journal state is `state` (polling `GET /v1/runs/{id}`).
    pub async fn wait_state(
        &self,
        tenant: &str,
        run: &str,
        state: &str,
        within: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.get(tenant, &format!("/v1/runs/{run}")).await;
            if status == 200
                && body["run"]["state"] == state
                && (state == "running" || !body["report"].is_null())
            {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run} is not {state} after {within:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// A server-sent events stream, read event by event.
#[derive(Debug)]
pub struct Sse {
    response: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // Comments (keep-alives) carry no id.
                if let Some(id) = id {
                    let data = serde_json::from_str(&data).expect("SSE data is JSON");
                    return Some(SseEvent { id, event, data });
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every remaining event, to the end of the stream.
    pub async fn collect(mut self) -> Vec<SseEvent> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}
