//! Test an agent without a host: run its [`Agent::run`] in a plain `cargo test`, with given
//! parameters and upstream outputs, a fake blackboard, fake tools and secrets, and assert on
//! its output, progress, partial results, logs and what it wrote or called.
//!
//! Only in native builds: in a component the same calls go to the real host. The agent runs
//! through the same glue as in a component (parameters parsed, output serialized), so a
//! parameter that does not fit is the same `invalid-input` as in a real run.
//!
//! ```
//! use serde::Deserialize;
//! use wasm_orch_sdk::testing::TestRun;
//! use wasm_orch_sdk::{Agent, Context, Error, status};
//!
//! #[derive(Deserialize)]
//! struct Params { a: i64 }
//! struct Double;
//! impl Agent for Double {
//!     type Params = Params;
//!     type Output = i64;
//!     fn run(cx: Context<Params>) -> Result<i64, Error> {
//!         status::progress(1.0, "doubled");
//!         Ok(2 * cx.params.a + cx.upstream_all::<i64>()?.into_iter().sum::<i64>())
//!     }
//! }
//!
//! let outcome = TestRun::new(serde_json::json!({ "a": 4 }))
//!     .upstream("left", 1)
//!     .run::<Double>();
//! assert_eq!(outcome.output::<i64>(), 9);
//! assert_eq!(outcome.progress, vec![(1.0, "doubled".to_owned())]);
//! ```
//!
//! The blackboard behaves as the host's does: plain keys are the task's branch's own,
//! `shared/...` keys are written only with compare-and-swap (a `put` is refused),
//! `branches/<branch>/...` keys of other branches are read-only. Tools and secrets the test
//! does not give are denied, as ungranted ones are.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::export::run;
pub use crate::status::Level;
use crate::tools::ToolError;
use crate::wit::wasm_orch::agent::blackboard::{BlackboardError, Entry};
use crate::wit::wasm_orch::agent::messages::{Message, MessageError};
use crate::wit::wasm_orch::agent::secrets::SecretError;
use crate::wit::wasm_orch::agent::tools::ToolError as WitToolError;
use crate::wit::wasm_orch::agent::types::{self, AgentError, TaskInput, UpstreamOutcome};
use crate::{Agent, Error};

type ToolFn = Box<dyn FnMut(Value) -> Result<Value, ToolError>>;
type PeerFn = Box<dyn FnMut(Value) -> Vec<Value>>;

/// One task to run: its parameters, where it runs, its upstream outcomes, and the fake host
/// it sees.
pub struct TestRun {
    params: String,
    node: String,
    workflow: String,
    attempt: u32,
    tenant: String,
    upstream: Vec<types::Upstream>,
    host: Host,
}

impl std::fmt::Debug for TestRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRun")
            .field("params", &self.params)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a run of the agent did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// Its output as the host receives it (JSON), or its error.
    pub result: Result<Value, Error>,
    /// Every progress report, in order.
    pub progress: Vec<(f32, String)>,
    /// Every partial result, in order.
    pub partials: Vec<Value>,
    /// Every log line, in order.
    pub logs: Vec<(Level, String)>,
    /// The blackboard after the run: key → value.
    pub blackboard: BTreeMap<String, Value>,
    /// Every tool call: tool and input.
    pub tool_calls: Vec<(String, Value)>,
    /// The secrets it read, by name.
    pub secrets_read: Vec<String>,
    /// Every message it sent: receiver and body.
    pub sent: Vec<(String, Value)>,
    /// Messages left unread in its inbox.
    pub unread: Vec<(String, Value)>,
}

impl Outcome {
    /// The output, as `T`. Panics (failing the test) with the agent's error if it failed.
    pub fn output<T: DeserializeOwned>(&self) -> T {
        match &self.result {
            Ok(v) => serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("the output {v} is not of the expected type: {e}")),
            Err(e) => panic!("the agent failed: {e}"),
        }
    }

    /// The agent's error. Panics (failing the test) if it succeeded.
    pub fn error(&self) -> &Error {
        match &self.result {
            Ok(v) => panic!("the agent succeeded with {v}"),
            Err(e) => e,
        }
    }
}

impl TestRun {
    /// A task with these parameters (anything serializable: a `json!` value, a struct).
    pub fn new(params: impl Serialize) -> Self {
        let params = serde_json::to_string(&params)
            .unwrap_or_else(|e| panic!("the parameters do not serialize: {e}"));
        Self::with_raw_params(params)
    }

    /// A task with these parameters, as JSON text exactly as a workflow would give them.
    pub fn with_raw_params(json: impl Into<String>) -> Self {
        Self {
            params: json.into(),
            node: "task".into(),
            workflow: "test".into(),
            attempt: 1,
            tenant: "default".into(),
            upstream: Vec::new(),
            host: Host::default(),
        }
    }

    /// The task's node id (default `task`; its branch is `test.<node>`).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// The attempt number (default 1).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The run's tenant (default `default`).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// An upstream task `node` that succeeded with `output`.
    pub fn upstream(mut self, node: impl Into<String>, output: impl Serialize) -> Self {
        let json = serde_json::to_string(&output)
            .unwrap_or_else(|e| panic!("the upstream output does not serialize: {e}"));
        self.upstream.push(types::Upstream {
            node: node.into(),
            outcome: UpstreamOutcome::Output(json),
        });
        self
    }

    /// An upstream task `node` that ended with `status`, an error of `kind` and `message`
    /// (given to tasks that run on upstream failure).
    pub fn upstream_failed(
        mut self,
        node: impl Into<String>,
        status: crate::TaskStatus,
        kind: crate::FailureKind,
        message: &str,
    ) -> Self {
        self.upstream.push(types::Upstream {
            node: node.into(),
            outcome: UpstreamOutcome::Failed(types::UpstreamFailure {
                status,
                kind,
                message: message.into(),
            }),
        });
        self
    }

    /// A blackboard entry present before the task runs (`shared/...`, `branches/...` or one of
    /// the task's own keys), at version 1.
    pub fn blackboard(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        let json = serde_json::to_string(&value)
            .unwrap_or_else(|e| panic!("the blackboard value does not serialize: {e}"));
        self.host.board.insert(key.into(), (json, 1));
        self
    }

    /// Grants tool `name`, answered by `tool` (its input and output as JSON values).
    pub fn tool(
        mut self,
        name: impl Into<String>,
        tool: impl FnMut(Value) -> Result<Value, ToolError> + 'static,
    ) -> Self {
        self.host.tools.insert(name.into(), Box::new(tool));
        self
    }

    /// Grants the `sleep` tool, which returns at once (the call is recorded).
    pub fn sleep_tool(self) -> Self {
        self.tool("sleep", |_| Ok(Value::Object(Default::default())))
    }

    /// Grants secret `name` with `value`.
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.host.secrets.insert(name.into(), value.into());
        self
    }

    /// A message from task `from` waiting in the task's inbox when it starts.
    pub fn message(mut self, from: impl Into<String>, body: impl Serialize) -> Self {
        let json = serde_json::to_string(&body)
            .unwrap_or_else(|e| panic!("the message body does not serialize: {e}"));
        let from = from.into();
        self.host.peers.entry(from.clone()).or_insert(None);
        self.host.deliver(&from, json);
        self
    }

    /// Another task `node` of the run, to which the agent may send messages: `answer` is
    /// given each body it is sent and returns the messages it sends back (none, one, more).
    /// A message to a node that is not declared is refused, as the host refuses one to a
    /// task not of the run.
    pub fn peer(
        mut self,
        node: impl Into<String>,
        answer: impl FnMut(Value) -> Vec<Value> + 'static,
    ) -> Self {
        self.host.peers.insert(node.into(), Some(Box::new(answer)));
        self
    }

    /// Runs agent `A` on this task and returns what it did.
    pub fn run<A: Agent>(mut self) -> Outcome {
        let branch = format!("{}.{}", self.workflow, self.node);
        self.host.branch = branch.clone();
        let input = TaskInput {
            task: types::Task {
                run_id: "test-run".into(),
                node: self.node.clone(),
                branch,
                attempt: self.attempt,
                tenant: self.tenant.clone(),
            },
            params: self.params.clone(),
            upstream: std::mem::take(&mut self.upstream),
        };
        HOST.with(|h| {
            let mut slot = h.borrow_mut();
            assert!(
                slot.is_none(),
                "a TestRun is already running on this thread"
            );
            *slot = Some(std::mem::take(&mut self.host));
        });
        // Taken back even if the agent panics, so that the next test on this thread starts
        // clean.
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                HOST.with(|h| h.borrow_mut().take());
            }
        }
        let reset = Reset;
        let result = run::<A>(input);
        let host = HOST.with(|h| h.borrow_mut().take()).unwrap_or_default();
        drop(reset);
        let result = match result {
            Ok(json) => Ok(serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("the agent's output is not JSON: {e}"))),
            Err(AgentError::InvalidInput(m)) => Err(Error::invalid_input(m)),
            Err(AgentError::Failed(m)) => Err(Error::failed(m)),
            Err(AgentError::Unavailable(m)) => Err(Error::unavailable(m)),
        };
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::String(s.to_owned()));
        Outcome {
            result,
            progress: host.progress,
            partials: host.partials.iter().map(|p| parse(p)).collect(),
            logs: host.logs,
            blackboard: host
                .board
                .iter()
                .map(|(k, (v, _))| (k.clone(), parse(v)))
                .collect(),
            tool_calls: host.tool_calls,
            secrets_read: host.secrets_read,
            sent: host.sent,
            unread: host
                .inbox
                .iter()
                .map(|m| (m.sender.clone(), parse(&m.body)))
                .collect(),
        }
    }
}

thread_local! {
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
}

/// Runs `f` on the test host of the current [`TestRun`].
pub(crate) fn with_host<T>(f: impl FnOnce(&mut Host) -> T) -> T {
    HOST.with(|h| match h.borrow_mut().as_mut() {
        Some(host) => f(host),
        None => panic!(
            "wasm-orch-sdk: outside a component, host calls work only inside \
             `wasm_orch_sdk::testing::TestRun::run`"
        ),
    })
}

/// The fake host of one test run.
#[derive(Default)]
pub(crate) struct Host {
    branch: String,
    board: BTreeMap<String, (String, u64)>,
    tools: BTreeMap<String, ToolFn>,
    secrets: BTreeMap<String, String>,
    progress: Vec<(f32, String)>,
    partials: Vec<String>,
    logs: Vec<(Level, String)>,
    tool_calls: Vec<(String, Value)>,
    secrets_read: Vec<String>,
    /// The other tasks of the run, and how each answers a message (`None`: it does not).
    peers: BTreeMap<String, Option<PeerFn>>,
    inbox: std::collections::VecDeque<Message>,
    delivered: u64,
    sent: Vec<(String, Value)>,
}

impl Host {
    pub(crate) fn progress(&mut self, fraction: f32, message: &str) {
        self.progress.push((fraction, message.to_owned()));
    }

    pub(crate) fn partial(&mut self, json: &str) {
        self.partials.push(json.to_owned());
    }

    pub(crate) fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }

    /// The stored key for `key`: this branch's own keys are read under `branches/<own>/` too.
    fn resolve(&self, key: &str) -> String {
        let own = format!("branches/{}/", self.branch);
        key.strip_prefix(&own).unwrap_or(key).to_owned()
    }

    fn writable(&self, key: &str, cas: bool) -> Result<String, BlackboardError> {
        let key = self.resolve(key);
        if key.starts_with("branches/") {
            return Err(BlackboardError::Denied(
                "another branch's keys are read-only".into(),
            ));
        }
        if key.starts_with("shared/") && !cas {
            return Err(BlackboardError::Denied(
                "shared keys are written with compare-and-swap (or update)".into(),
            ));
        }
        Ok(key)
    }

    pub(crate) fn bb_get(&mut self, key: &str) -> Result<Option<Entry>, BlackboardError> {
        Ok(self
            .board
            .get(&self.resolve(key))
            .map(|(value, version)| Entry {
                value: value.clone(),
                version: *version,
            }))
    }

    pub(crate) fn bb_put(&mut self, key: &str, value: &str) -> Result<u64, BlackboardError> {
        let key = self.writable(key, false)?;
        let entry = self.board.entry(key).or_insert((String::new(), 0));
        entry.0 = value.to_owned();
        entry.1 += 1;
        Ok(entry.1)
    }

    pub(crate) fn bb_cas(
        &mut self,
        key: &str,
        expected: Option<u64>,
        value: &str,
    ) -> Result<u64, BlackboardError> {
        let key = self.writable(key, true)?;
        let current = self.board.get(&key).map(|(_, v)| *v);
        if current != expected {
            return Err(BlackboardError::Conflict(self.board.get(&key).map(
                |(value, version)| Entry {
                    value: value.clone(),
                    version: *version,
                },
            )));
        }
        let version = current.unwrap_or(0) + 1;
        self.board.insert(key, (value.to_owned(), version));
        Ok(version)
    }

    pub(crate) fn bb_list(&mut self, prefix: &str) -> Result<Vec<String>, BlackboardError> {
        let prefix = self.resolve(prefix);
        Ok(self
            .board
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect())
    }

    pub(crate) fn tool(&mut self, name: &str, input: &str) -> Result<String, WitToolError> {
        let value: Value = serde_json::from_str(input)
            .map_err(|e| WitToolError::InvalidInput(format!("not JSON: {e}")))?;
        self.tool_calls.push((name.to_owned(), value.clone()));
        let Some(tool) = self.tools.get_mut(name) else {
            return Err(WitToolError::Denied(format!(
                "tool `{name}` is not granted to this agent (give it with TestRun::tool)"
            )));
        };
        let output = tool(value).map_err(|e| match e {
            ToolError::NotFound(m) => WitToolError::NotFound(m),
            ToolError::Denied(m) => WitToolError::Denied(m),
            ToolError::InvalidInput(m) => WitToolError::InvalidInput(m),
            other => WitToolError::Failed(other.to_string()),
        })?;
        Ok(output.to_string())
    }

    fn deliver(&mut self, from: &str, body: String) {
        self.delivered += 1;
        self.inbox.push_back(Message {
            sender: from.to_owned(),
            body,
            seq: self.delivered,
        });
    }

    pub(crate) fn send(&mut self, to: &str, body: &str) -> Result<u64, MessageError> {
        let value: Value = serde_json::from_str(body)
            .map_err(|e| MessageError::Denied(format!("the body is not JSON: {e}")))?;
        let Some(peer) = self.peers.get_mut(to) else {
            return Err(MessageError::Denied(format!(
                "`{to}` is not a task of this run (declare it with TestRun::peer)"
            )));
        };
        let answers = peer
            .as_mut()
            .map(|answer| answer(value.clone()))
            .unwrap_or_default();
        self.sent.push((to.to_owned(), value));
        for answer in answers {
            self.deliver(to, answer.to_string());
        }
        // The fake has one inbox per peer: the place is the count sent to `to`.
        Ok(self.sent.iter().filter(|(t, _)| t == to).count() as u64)
    }

    /// The next message, at once: a test host has no one to wait for.
    pub(crate) fn receive(&mut self) -> Option<Message> {
        self.inbox.pop_front()
    }

    pub(crate) fn secret(&mut self, name: &str) -> Result<String, SecretError> {
        self.secrets_read.push(name.to_owned());
        self.secrets.get(name).cloned().ok_or_else(|| {
            SecretError::Denied(format!(
                "secret `{name}` is not granted to this agent (give it with TestRun::secret)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, blackboard, secrets, status, tools};

    struct Busy;
    impl Agent for Busy {
        type Params = Value;
        type Output = Value;
        fn run(cx: Context<Value>) -> Result<Value, Error> {
            status::progress(0.5, "half");
            status::partial(&serde_json::json!({ "n": 1 }));
            status::info("hello");
            blackboard::put("mine", &1)?;
            let shared = blackboard::update("shared/count", |n: Option<u64>| n.unwrap_or(0) + 1)?;
            let refused = blackboard::put("shared/count", &0).is_err();
            let theirs: Option<blackboard::Entry<String>> =
                blackboard::get("branches/test.other/x")?;
            let echoed: Value = tools::invoke("echo", &cx.params)?;
            let denied = tools::sleep(std::time::Duration::from_millis(1)).is_err();
            let token = secrets::get("token")?;
            Ok(serde_json::json!({
                "shared": shared.value, "refused": refused, "theirs": theirs.map(|t| t.value),
                "echoed": echoed, "denied": denied, "token": token.len(),
            }))
        }
    }

    struct Looped;
    impl Agent for Looped {
        type Params = Value;
        type Output = Value;
        fn run(cx: Context<Value>) -> Result<Value, Error> {
            let previous: Option<Value> = cx.previous()?;
            let dependencies: Vec<Value> = cx.upstream_all()?;
            Ok(serde_json::json!({
                "previous": previous,
                "dependencies": dependencies,
                "raw": cx.upstream_raw().count(),
                "outcomes": cx.upstream_outcomes::<Value>()?.len(),
            }))
        }
    }

    #[test]
    fn a_loops_previous_iteration_is_not_one_of_its_dependencies() {
        let out: Value = TestRun::new(serde_json::json!({}))
            .node("loop")
            .upstream("loop", 1)
            .upstream("input", 2)
            .run::<Looped>()
            .output();
        assert_eq!(
            out,
            serde_json::json!({ "previous": 1, "dependencies": [2], "raw": 1, "outcomes": 1 })
        );
    }

    #[test]
    fn an_agent_sees_a_host_that_behaves_like_the_real_one() {
        let outcome = TestRun::new(serde_json::json!({ "k": "v" }))
            .blackboard("shared/count", 41)
            .blackboard("branches/test.other/x", "x")
            .tool("echo", Ok)
            .secret("token", "s3cret")
            .run::<Busy>();
        let out: Value = outcome.output();
        assert_eq!(out["shared"], 42);
        assert_eq!(out["refused"], true);
        assert_eq!(out["theirs"], "x");
        assert_eq!(out["echoed"], serde_json::json!({ "k": "v" }));
        assert_eq!(out["denied"], true, "an ungranted tool is denied");
        assert_eq!(out["token"], 6);
        assert_eq!(outcome.progress, vec![(0.5, "half".to_owned())]);
        assert_eq!(outcome.partials, vec![serde_json::json!({ "n": 1 })]);
        assert_eq!(outcome.logs, vec![(Level::Info, "hello".to_owned())]);
        assert_eq!(outcome.blackboard["mine"], 1);
        assert_eq!(outcome.blackboard["shared/count"], 42);
        assert_eq!(outcome.tool_calls.len(), 2);
        assert_eq!(outcome.secrets_read, vec!["token".to_owned()]);
    }

    struct Echo;
    impl Agent for Echo {
        type Params = Value;
        type Output = Value;
        fn run(_cx: Context<Value>) -> Result<Value, Error> {
            let mut got = Vec::new();
            while let Some(m) =
                crate::messages::receive::<Value>(std::time::Duration::from_millis(10))?
            {
                got.push((m.from.clone(), m.seq));
                crate::messages::send("peer", &m.body)?;
            }
            let stranger = crate::messages::send("run-2/peer", &1).is_err();
            Ok(serde_json::json!({ "got": got, "stranger": stranger }))
        }
    }

    #[test]
    fn messages_come_from_the_inbox_and_peers_answer_what_they_are_sent() {
        let mut answered = 0;
        let outcome = TestRun::new(Value::Null)
            .message("boss", 1)
            .peer("peer", move |body| {
                answered += 1;
                if answered < 3 {
                    vec![serde_json::json!(body.as_i64().unwrap_or(0) + 1)]
                } else {
                    vec![]
                }
            })
            .run::<Echo>();
        let out: Value = outcome.output();
        assert_eq!(
            out["got"],
            serde_json::json!([["boss", 1], ["peer", 2], ["peer", 3]])
        );
        assert_eq!(out["stranger"], true, "an undeclared task is refused");
        let sent: Vec<&Value> = outcome.sent.iter().map(|(_, b)| b).collect();
        assert_eq!(
            sent,
            [
                &serde_json::json!(1),
                &serde_json::json!(2),
                &serde_json::json!(3)
            ]
        );
        assert!(outcome.unread.is_empty());
    }

    struct Typed;
    impl Agent for Typed {
        type Params = u8;
        type Output = u8;
        fn run(cx: Context<u8>) -> Result<u8, Error> {
            if cx.params == 0 {
                return Err(Error::unavailable("zero"));
            }
            Ok(cx.params)
        }
    }

    #[test]
    fn parameters_that_do_not_fit_and_errors_come_back_as_in_a_real_run() {
        let bad = TestRun::with_raw_params("\"text\"").run::<Typed>();
        assert_eq!(bad.error().kind(), crate::ErrorKind::InvalidInput);
        let zero = TestRun::new(0).run::<Typed>();
        assert_eq!(zero.error().kind(), crate::ErrorKind::Unavailable);
        assert_eq!(TestRun::new(7).run::<Typed>().output::<u8>(), 7);
    }
}
