//! What a task receives: its parameters, where it runs, and the outputs of its upstream tasks.

use serde::de::DeserializeOwned;

use crate::Error;
use crate::wit::wasm_orch::agent::types;

/// Where a task runs. Set by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Unique id of this workflow run.
    pub run_id: String,
    /// The task's node id in the workflow.
    pub node: String,
    /// The task's branch, `<workflow>.<node>`.
    pub branch: String,
    /// 1 for the first attempt, one more on each retry.
    pub attempt: u32,
    /// The tenant the run belongs to.
    pub tenant: String,
}

/// The input of one task: typed parameters plus upstream outputs.
#[derive(Debug)]
pub struct Context<P> {
    /// The task's parameters, from `with` in the workflow file.
    pub params: P,
    task: Task,
    upstream: Vec<types::Upstream>,
}

impl<P> Context<P> {
    pub(crate) fn new(params: P, task: types::Task, upstream: Vec<types::Upstream>) -> Self {
        let task = Task {
            run_id: task.run_id,
            node: task.node,
            branch: task.branch,
            attempt: task.attempt,
            tenant: task.tenant,
        };
        Self {
            params,
            task,
            upstream,
        }
    }

    /// Where this task runs.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The output of the upstream task `node`, deserialized.
    ///
    /// Fails with `invalid-input` if this task does not depend on `node` or its output does
    /// not have the expected shape.
    pub fn upstream<T: DeserializeOwned>(&self, node: &str) -> Result<T, Error> {
        let up = self
            .upstream
            .iter()
            .find(|u| u.node == node)
            .ok_or_else(|| Error::invalid_input(format!("no upstream task named `{node}`")))?;
        decode(up)
    }

    /// Every upstream output, in `depends_on` order, deserialized as `T`.
    pub fn upstream_all<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        self.upstream.iter().map(decode).collect()
    }

    /// Upstream node ids and their raw JSON outputs, in `depends_on` order.
    pub fn upstream_raw(&self) -> impl Iterator<Item = (&str, &str)> {
        self.upstream
            .iter()
            .map(|u| (u.node.as_str(), u.output.as_str()))
    }
}

fn decode<T: DeserializeOwned>(up: &types::Upstream) -> Result<T, Error> {
    serde_json::from_str(&up.output).map_err(|e| {
        Error::invalid_input(format!(
            "output of upstream task `{}` has an unexpected shape: {e}",
            up.node
        ))
    })
}
