//! The blackboard's policy: which keys a task may name, and where each one lives.
//!
//! The host namespaces every key, never the guest: a key is its branch's own copy
//! (`branches/<branch>/<key>`) unless it starts with `shared/`, which the whole run shares and
//! which is written only with compare-and-swap (so parallel branches never lose an update).
//! Other branches' copies can be read as `branches/<branch>/<key>`, never written. Another
//! tenant's or run's keys are in another blackboard altogether; keys that try to climb out
//! (`..`, a leading `/`) or name the host's namespaces are refused.

use std::collections::HashSet;
use std::sync::Arc;

use super::board::Blackboard;
use super::relay::BoardRelay;
use crate::model::Name;

/// A task's place in its run's blackboard.
#[derive(Debug, Clone)]
pub(crate) struct BoardScope {
    pub(crate) board: Arc<Blackboard>,
    /// The task's branch: its own namespace.
    pub(crate) branch: Name,
    /// Every branch of the run: their copies can be read.
    pub(crate) branches: Arc<HashSet<String>>,
    /// Where the calls go instead, when the board is another process's (a worker's
    /// attempt: its coordinator's).
    pub(crate) relay: Option<Arc<dyn BoardRelay>>,
}

impl BoardScope {
    /// A board of its own (for `describe`).
    pub(crate) fn alone() -> Self {
        Self {
            board: Arc::default(),
            branch: "describe".into(),
            branches: Arc::default(),
            relay: None,
        }
    }

    /// The scope of a task whose calls go through `relay` (`branch` is only named).
    pub(crate) fn relayed(branch: Name, relay: Arc<dyn BoardRelay>) -> Self {
        Self {
            branch,
            relay: Some(relay),
            ..Self::alone()
        }
    }
}

/// Keys every branch of the run shares.
pub(crate) const SHARED: &str = "shared/";
pub(crate) const MAX_KEY: usize = 256;

/// Keys of every branch's own copy.
pub(crate) const BRANCHES: &str = "branches/";

/// First segments a guest may not use: the host's own namespaces above a run.
pub(crate) const RESERVED: [&str; 2] = ["tenants", "runs"];

/// Where a guest's key lives in the run's blackboard, or why it may not name it. `branches`
/// are the run's (another branch's copy is read as `branches/<branch>/<key>`).
pub(crate) fn resolve(
    key: &str,
    branch: &str,
    branches: &HashSet<String>,
    write: bool,
) -> Result<String, String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("keys have 1 to {MAX_KEY} bytes"));
    }
    if key.starts_with('/') {
        return Err(
            "a key cannot be absolute: keys are relative to the task's own namespace".into(),
        );
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "`{segment}` is not a key segment: keys cannot climb out of the task's namespace"
            ));
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:@+=".contains(c))
        {
            return Err("key segments use letters, digits and `_-.:@+=`".into());
        }
    }
    let first = key.split('/').next().unwrap_or_default();
    if RESERVED.contains(&first) {
        return Err(format!(
            "`{first}/` is the host's: keys are scoped by the host to the task's own tenant and run, and cannot name another"
        ));
    }
    if key.starts_with(SHARED) {
        Ok(key.to_owned())
    } else if let Some(rest) = key.strip_prefix(BRANCHES) {
        let other = rest.split('/').next().unwrap_or_default();
        if !is_branch(other, branches) && other != branch {
            Err(format!(
                "`{other}` is not a branch of this run: other runs' and tenants' keys are out of reach"
            ))
        } else if write {
            Err("another branch's keys are read-only: write your own keys without a prefix".into())
        } else {
            Ok(key.to_owned())
        }
    } else {
        Ok(format!("{BRANCHES}{branch}/{key}"))
    }
}

/// Whether `name` is a branch of the run: one of `branches`, or of a task a planner's plan
/// added (its branch is its planner's, `.` and its own id: `w.plan.left`).
fn is_branch(name: &str, branches: &HashSet<String>) -> bool {
    let mut prefix = name;
    loop {
        if branches.contains(prefix) {
            return true;
        }
        match prefix.rfind('.') {
            Some(i) => prefix = &prefix[..i],
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_branchs_own_unless_shared_and_cannot_climb_out() {
        let run: HashSet<String> = ["w.a".to_owned(), "w.b".to_owned()].into();
        let r = |key: &str, write| resolve(key, "w.a", &run, write);
        assert_eq!(r("count", true), Ok("branches/w.a/count".into()));
        assert_eq!(r("notes/x", true), Ok("branches/w.a/notes/x".into()));
        assert_eq!(r("shared/total", true), Ok("shared/total".into()));
        assert_eq!(r("branches/w.b/n", false), Ok("branches/w.b/n".into()));
        assert!(
            r("branches/w.b/n", true).is_err(),
            "wrote another branch's key"
        );
        assert!(
            r("branches/other.x/n", false).is_err(),
            "read another run's branch"
        );
        for bad in [
            "",
            "/etc",
            "../w.b/count",
            "a/../../b",
            "a//b",
            "./a",
            "a b",
            "x\u{0}",
            "tenants/acme/runs/r1/shared/k",
            "runs/r1/shared/k",
        ] {
            assert!(r(bad, false).is_err(), "`{bad}` was accepted");
        }
    }
}
