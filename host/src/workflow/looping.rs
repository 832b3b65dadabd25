//! Loops over a child workflow (`workflow = "body.toml"` with `loop = { max_iterations = N }`):
//! the run grows by one iteration at a time. The first iteration is inlined when the file is
//! validated (`<loop>.1.<id>`, see `children`); when an iteration's last task succeeds without
//! saying stop, and fewer than N have run, the next is a copy of the first (`<loop>.2.<id>`,
//! ...): its first tasks depend on what the loop depended on and on the last task before
//! (whose output they see as the previous iteration's), and the loop's dependents wait for
//! its last task too. Only the last iteration's output reaches them.

use std::collections::HashMap;

use petgraph::graph::NodeIndex;

use super::validate::{compute_critical_paths, dag};
use super::{Iteration, Workflow};

impl Workflow {
    /// The workflow grown with the iteration after the one whose last task is `end`; or why
    /// the run cannot grow by it.
    pub(crate) fn repeat(&self, end: usize) -> Result<Workflow, String> {
        let Some(Iteration { looped, n, max, .. }) =
            self.tasks.get(end).and_then(|t| t.iteration.clone())
        else {
            return Err("this task ends no iteration of a loop".into());
        };
        if n >= max {
            return Err(format!("loop `{looped}` has run its {max} iterations"));
        }
        let next = n + 1;
        let first = format!("{looped}.1.");
        let body: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| {
                self.tasks[i]
                    .iteration
                    .as_ref()
                    .is_some_and(|it| it.looped == looped && it.n == 1)
            })
            .collect();
        let room = self.max_tasks.saturating_sub(self.tasks.len());
        if body.len() > room {
            return Err(format!(
                "loop `{looped}` cannot run iteration {next}: it adds {} tasks, and the run may grow by only {room} more (its `max_tasks` is {})",
                body.len(),
                self.max_tasks
            ));
        }
        let before = self.tasks.len();
        let copy: HashMap<usize, usize> = body
            .iter()
            .enumerate()
            .map(|(j, &i)| (i, before + j))
            .collect();
        let mut tasks = self.tasks.clone();
        for &i in &body {
            let mut task = self.tasks[i].clone();
            let Some(rest) = task.id.strip_prefix(&first) else {
                return Err(format!("task `{}` of loop `{looped}` is misnamed", task.id));
            };
            task.id = format!("{looped}.{next}.{rest}");
            if self.tasks.iter().any(|t| t.id == task.id) {
                return Err(format!(
                    "loop `{looped}` cannot run iteration {next}: task id `{}` is taken",
                    task.id
                ));
            }
            let inside = task.deps.iter().any(|d| copy.contains_key(d));
            task.deps = task
                .deps
                .iter()
                .map(|d| copy.get(d).copied().unwrap_or(*d))
                .collect();
            // The body's first tasks go on from the iteration before.
            if !inside {
                task.deps.push(end);
            }
            if let Some(it) = &mut task.iteration {
                it.n = next;
            }
            tasks.push(task);
        }
        // The loop's dependents wait for this iteration's last task too, beside the last one's.
        let last: Vec<usize> = tasks[before..]
            .iter()
            .enumerate()
            .filter(|(_, t)| t.iteration.as_ref().is_some_and(|it| it.end))
            .map(|(j, _)| before + j)
            .collect();
        for dependent in self.graph.neighbors(NodeIndex::new(end)) {
            let deps = &mut tasks[dependent.index()].deps;
            let at = deps
                .iter()
                .position(|&d| d == end)
                .map_or(deps.len(), |p| p + 1);
            deps.splice(at..at, last.iter().copied());
        }
        let graph = dag(tasks.iter().map(|t| t.deps.as_slice()));
        compute_critical_paths(&graph, &mut tasks);
        Ok(Workflow {
            tasks,
            graph,
            ..self.clone()
        })
    }

    /// The last task of the iteration before `task`'s, if `task` is a first task of an
    /// iteration after the first (its output is what `task` sees as the previous one's).
    pub(crate) fn previous_end(&self, task: usize) -> Option<usize> {
        let it = self.tasks.get(task)?.iteration.as_ref()?;
        if it.n < 2 {
            return None;
        }
        self.tasks[task].deps.iter().copied().find(|&d| {
            self.tasks[d]
                .iteration
                .as_ref()
                .is_some_and(|p| p.end && p.looped == it.looped && p.n + 1 == it.n)
        })
    }
}
