//! The host side of the WIT contract: the crate's `bindgen!`s. It imports nothing else of
//! the crate; capabilities implement its interfaces, the engine calls its exports.
//!
//! Two versions of the contract are served. [`v3`] is `wasm-orch:agent@0.3.0` (`wit/`), the
//! one the SDK and `wasm-orch new` build against. [`v2`] is `wasm-orch:agent@0.2.0`
//! (`wit/0.2/`, frozen), so that components built before 0.3 keep running unchanged: its
//! imports are served by the same capability code (`capabilities::legacy`), and its exports
//! are called through [`SubAgent`], which speaks 0.3 to the engine. The two differ only in
//! types (0.3 names JSON strings `json`, and gives an upstream failure's status and kind as
//! enums instead of strings), never in behaviour.
//!
//! Imports may trap (`trappable`) so a host failure ends the guest instead of panicking;
//! `tools.invoke`, `secrets.get`, `messages.receive` and the blackboard's calls are async
//! because they wait (a worker's blackboard is its coordinator's); exports are async so
//! that guests run on fibers and yield to tokio at every epoch tick.

use wasmtime::AsContextMut;
use wasmtime::component::{Instance, InstancePre};

/// `wasm-orch:agent@0.3.0`, from `wit/`. Its WASI imports are wasmtime-wasi's own.
pub(crate) mod v3 {
    wasmtime::component::bindgen!({
        world: "sub-agent",
        path: "../wit",
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
        },
        imports: {
            "wasm-orch:agent/tools.invoke": async | trappable,
            "wasm-orch:agent/secrets.get": async | trappable,
            "wasm-orch:agent/messages.send": async | trappable,
            "wasm-orch:agent/messages.receive": async | trappable,
            "wasm-orch:agent/blackboard.get": async | trappable,
            "wasm-orch:agent/blackboard.put": async | trappable,
            "wasm-orch:agent/blackboard.compare-and-swap": async | trappable,
            "wasm-orch:agent/blackboard.list-keys": async | trappable,
            default: trappable,
        },
        exports: {
            default: async,
        },
    });
}

/// `wasm-orch:agent@0.2.0`, from `wit/0.2/`: the previous contract, for older components.
pub(crate) mod v2 {
    wasmtime::component::bindgen!({
        world: "sub-agent",
        path: "../wit/0.2",
        imports: {
            "wasm-orch:agent/tools.invoke": async | trappable,
            "wasm-orch:agent/secrets.get": async | trappable,
            "wasm-orch:agent/blackboard.get": async | trappable,
            "wasm-orch:agent/blackboard.put": async | trappable,
            "wasm-orch:agent/blackboard.compare-and-swap": async | trappable,
            "wasm-orch:agent/blackboard.list-keys": async | trappable,
            default: trappable,
        },
        exports: {
            default: async,
        },
    });
}

pub(crate) use self::v3::exports::wasm_orch::agent::agent::Info;
pub(crate) use self::v3::wasm_orch::agent::types::{
    AgentError, ErrorKind, Task, TaskInput, TaskStatus, Upstream, UpstreamFailure, UpstreamOutcome,
};

/// The package every version of the contract belongs to.
pub(crate) const PACKAGE: &str = "wasm-orch:agent";

/// A version of the contract a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contract {
    V0_3,
    V0_2,
}

impl Contract {
    /// Every version this host runs, newest first.
    pub(crate) const ALL: [Contract; 2] = [Contract::V0_3, Contract::V0_2];

    /// Its version number.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Contract::V0_3 => "0.3.0",
            Contract::V0_2 => "0.2.0",
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PACKAGE}@{}", self.version())
    }
}

/// A component checked against one version of the `sub-agent` world, ready to instantiate.
pub(crate) enum SubAgentPre<T: 'static> {
    V3(v3::SubAgentPre<T>),
    V2(v2::SubAgentPre<T>),
}

impl<T: Send + 'static> SubAgentPre<T> {
    /// Checks `pre`'s exports against the newest version first. When neither fits, the error
    /// is the newest version's.
    pub(crate) fn new(pre: InstancePre<T>) -> wasmtime::Result<Self> {
        match v3::SubAgentPre::new(pre.clone()) {
            Ok(pre) => Ok(Self::V3(pre)),
            Err(newest) => v2::SubAgentPre::new(pre).map(Self::V2).map_err(|_| newest),
        }
    }

    /// The version of the contract the component implements.
    pub(crate) fn contract(&self) -> Contract {
        match self {
            Self::V3(_) => Contract::V0_3,
            Self::V2(_) => Contract::V0_2,
        }
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<T> {
        match self {
            Self::V3(pre) => pre.instance_pre(),
            Self::V2(pre) => pre.instance_pre(),
        }
    }

    pub(crate) async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<SubAgent> {
        Ok(match self {
            Self::V3(pre) => SubAgent::V3(pre.instantiate_async(store).await?),
            Self::V2(pre) => SubAgent::V2(pre.instantiate_async(store).await?),
        })
    }

    /// Looks the exports of `instance` up as typed functions.
    pub(crate) fn typed(
        &self,
        store: impl AsContextMut<Data = T>,
        instance: &Instance,
    ) -> wasmtime::Result<SubAgent> {
        Ok(match self {
            Self::V3(_) => SubAgent::V3(v3::SubAgent::new(store, instance)?),
            Self::V2(_) => SubAgent::V2(v2::SubAgent::new(store, instance)?),
        })
    }
}

/// An instance of a sub-agent, of either version; spoken to in 0.3 types.
pub(crate) enum SubAgent {
    V3(v3::SubAgent),
    V2(v2::SubAgent),
}

impl SubAgent {
    /// Calls `run`. A 0.2 component gets the same input with its enums as their names.
    pub(crate) async fn call_run<S>(
        &self,
        store: S,
        input: &TaskInput,
    ) -> wasmtime::Result<Result<String, AgentError>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self {
            Self::V3(agent) => agent.wasm_orch_agent_agent().call_run(store, input).await,
            Self::V2(agent) => {
                let input = to_v2(input);
                let ended = agent
                    .wasm_orch_agent_agent()
                    .call_run(store, &input)
                    .await?;
                Ok(ended.map_err(|e| {
                    use v2::wasm_orch::agent::types::AgentError as Old;
                    match e {
                        Old::InvalidInput(m) => AgentError::InvalidInput(m),
                        Old::Failed(m) => AgentError::Failed(m),
                        Old::Unavailable(m) => AgentError::Unavailable(m),
                    }
                }))
            }
        }
    }

    /// Calls `describe`.
    pub(crate) async fn call_describe<S>(&self, store: S) -> wasmtime::Result<Info>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self {
            Self::V3(agent) => agent.wasm_orch_agent_agent().call_describe(store).await,
            Self::V2(agent) => {
                let info = agent.wasm_orch_agent_agent().call_describe(store).await?;
                Ok(Info {
                    name: info.name,
                    version: info.version,
                    description: info.description,
                    capabilities: info.capabilities,
                })
            }
        }
    }
}

fn to_v2(input: &TaskInput) -> v2::wasm_orch::agent::types::TaskInput {
    use v2::wasm_orch::agent::types as old;
    old::TaskInput {
        task: old::Task {
            run_id: input.task.run_id.clone(),
            node: input.task.node.clone(),
            branch: input.task.branch.clone(),
            attempt: input.task.attempt,
            tenant: input.task.tenant.clone(),
        },
        params: input.params.clone(),
        upstream: input
            .upstream
            .iter()
            .map(|up| old::Upstream {
                node: up.node.clone(),
                outcome: match &up.outcome {
                    UpstreamOutcome::Output(json) => old::UpstreamOutcome::Output(json.clone()),
                    UpstreamOutcome::Failed(f) => {
                        old::UpstreamOutcome::Failed(old::UpstreamFailure {
                            status: f.status.as_str().to_owned(),
                            kind: f.kind.as_str().to_owned(),
                            message: f.message.clone(),
                        })
                    }
                },
            })
            .collect(),
    }
}

impl TaskStatus {
    /// Its name in the contract (and in the run's results).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::OutOfFuel => "out-of-fuel",
            Self::MemoryExceeded => "memory-exceeded",
            Self::Trapped => "trapped",
            Self::OutputRejected => "output-rejected",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Blocked => "blocked",
            Self::BudgetExhausted => "budget-exhausted",
        }
    }
}

impl ErrorKind {
    /// Its name in the contract (and in the run's results).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::Failed => "failed",
            Self::Unavailable => "unavailable",
            Self::Trap => "trap",
            Self::OutOfFuel => "out-of-fuel",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory-limit",
            Self::OutputTooLarge => "output-too-large",
            Self::OutputNotJson => "output-not-json",
            Self::Host => "host",
            Self::Cancelled => "cancelled",
            Self::Dependency => "dependency",
            Self::Blocked => "blocked",
            Self::Budget => "budget",
            Self::ErrorBudget => "error-budget",
            Self::Claimed => "claimed",
            Self::Interrupted => "interrupted",
            Self::WorkerLost => "worker-lost",
        }
    }
}
