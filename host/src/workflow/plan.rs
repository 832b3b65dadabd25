//! Plans: what a planner agent returns, the tasks to run below it.
//!
//! A plan is checked exactly as a workflow file is, because it becomes one: its tasks are
//! written into the workflow's text (their ids prefixed with the planner's, so two planners'
//! plans never collide) and the whole is validated again, for the run's tenant. An unknown
//! agent, a cycle, a duplicate id, a bad limit or an agent the tenant may not use is the
//! same error it is in a file. The tasks that pass are spliced in below the planner: a task
//! of the plan that depends on none of the others depends on the planner, and the planner's
//! dependents wait for the plan's last tasks too. The file's own tasks keep their places
//! (the run's state is kept by task), the plan's come after them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::graph::NodeIndex;
use serde_json::Value as Json;

use super::validate::{compute_critical_paths, dag, validate};
use super::{TaskDef, Workflow};
use crate::config::{Diagnostic, Source};
use crate::model::events::{PlanCreated, PlannedTask};
use crate::model::limits::Budget;
use crate::model::text::{inert, truncate};

/// Keys a task of a plan may not have, and why.
const REFUSED_KEYS: [(&str, &str); 3] = [
    (
        "split",
        "a plan may not read files (`split` belongs in workflow files)",
    ),
    (
        "inputs",
        "a plan may not read files (`inputs` belongs in workflow files)",
    ),
    (
        "workflow",
        "a plan may not read files (a child `workflow` belongs in workflow files)",
    ),
];

/// A plan's text quoted in a message: bounded and inert.
fn quoted(text: &str) -> String {
    inert(truncate(text, 64)).into_owned()
}

impl Workflow {
    /// `agent.plan.created` for tasks `tasks` (all of them when a run starts; a plan's when it
    /// joins the run).
    pub(crate) fn plan_event(
        &self,
        tasks: std::ops::Range<usize>,
        max_concurrency: usize,
        budget: Budget,
    ) -> PlanCreated {
        PlanCreated {
            workflow: self.name.clone(),
            tenant: self.tenant.clone(),
            max_concurrency,
            budget,
            tasks: tasks.filter_map(|i| self.planned_task(i)).collect(),
            planner: None,
            waiting: Vec::new(),
            iteration: None,
            notes: Vec::new(),
        }
    }

    /// `agent.plan.created` for the tasks the plan of `planner` added (after the first
    /// `before`), and the planner's dependents that now wait for them.
    pub(crate) fn grown_event(
        &self,
        planner: usize,
        before: usize,
        max_concurrency: usize,
        budget: Budget,
    ) -> PlanCreated {
        let mut event = self.plan_event(before..self.tasks.len(), max_concurrency, budget);
        event.planner = self.tasks.get(planner).map(|t| t.id.clone());
        event.waiting = self
            .graph
            .neighbors(NodeIndex::new(planner))
            .filter(|n| n.index() < before)
            .filter_map(|n| self.planned_task(n.index()))
            .collect();
        event
    }

    fn planned_task(&self, i: usize) -> Option<PlannedTask> {
        let t = self.tasks.get(i)?;
        Some(PlannedTask {
            node: t.id.clone(),
            agent: self.target_label(i),
            depends_on: t.deps.iter().map(|&d| self.tasks[d].id.clone()).collect(),
            priority: t.priority,
            mutex: t.mutex.clone(),
            critical: t.critical,
            description: t.description.clone(),
        })
    }

    /// The workflow grown with `plan`, the output of its task `planner`; or why the plan is
    /// refused.
    pub(crate) fn grow(&self, planner: usize, plan: &Json) -> Result<Workflow, String> {
        let planner_id = &self.tasks[planner].id;
        let depth = self.tasks[planner].depth + 1;
        if depth > self.max_plan_depth {
            return Err(format!(
                "plans may nest {} deep (`max_plan_depth`), and this plan would be {depth} deep",
                self.max_plan_depth
            ));
        }
        if let Some(child) = self.child_of(planner) {
            return self.grow_in_child(planner, plan, child, depth);
        }
        let Some(object) = plan.as_object() else {
            return Err(
                "a plan is an object `{\"tasks\": [...]}`, and this output is not an object".into(),
            );
        };
        if let Some(key) = object.keys().find(|k| *k != "tasks") {
            return Err(format!(
                "a plan has only `tasks`, and this one has `{}` too",
                quoted(key)
            ));
        }
        let Some(tasks) = object.get("tasks").and_then(Json::as_array) else {
            return Err("a plan's `tasks` is a list of tasks".into());
        };
        if tasks.is_empty() {
            return Err("the plan has no tasks".into());
        }
        let room = self.max_tasks.saturating_sub(self.tasks.len());
        if tasks.len() > room {
            return Err(format!(
                "the plan has {} tasks, and the run may grow by only {room} more (its `max_tasks` is {})",
                tasks.len(),
                self.max_tasks
            ));
        }
        // A plan's dependencies name its own tasks (prefixed, they could name any task whose
        // id starts with the planner's: one already ended, or one that waits for this plan).
        let own: HashSet<&str> = tasks
            .iter()
            .filter_map(|t| t.get("id").and_then(Json::as_str))
            .collect();
        let mut written = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            written.push(plan_task(planner_id, i, task, &own)?);
        }
        let added = written.len();
        let mut table: toml::Table = toml::from_str(&self.source.text)
            .map_err(|e| format!("the workflow's own text does not parse again: {e}"))?;
        match table
            .entry("tasks")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
        {
            toml::Value::Array(list) => list.extend(written),
            _ => return Err("the workflow's `tasks` is not a list".into()),
        }
        let text = toml::to_string(&table)
            .map_err(|e| format!("the plan cannot be written as a workflow: {e}"))?;
        let source = Source::new(self.source.path.clone(), text);
        let grown = validate(source, &self.overrides, Some(&self.tenant)).map_err(|problems| {
            let each: Vec<String> = problems.iter().take(8).map(Diagnostic::brief).collect();
            let more = problems.len().saturating_sub(each.len());
            let more = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            format!("the plan is refused: {}{more}", each.join(" · "))
        })?;
        // The file's own parts are as they were: the same agents, in the same order (a
        // registry that changed since the run started would move them), and no task but the
        // plan's (a split file that changed would add some).
        let same_agents = grown.agents.len() == self.agents.len()
            && grown
                .agents
                .iter()
                .zip(&self.agents)
                .all(|(a, b)| a.name == b.name && a.component == b.component);
        // Iterations a loop added since, and plans of planners inside child workflows, are in
        // no file: they are carried over as they are.
        let carried = self.tasks.iter().filter(|t| is_carried(t)).count();
        if !same_agents || grown.tasks.len() + carried != self.tasks.len() + added {
            return Err(
                "the workflow's files changed since the run started (its registry or a file it splits): plans cannot be checked against them"
                    .into(),
            );
        }
        let mut grown = self.splice(planner, grown, depth)?;
        // The child files as this run has grown them (checked again, they were read afresh).
        grown.children.clone_from(&self.children);
        // What only the splice adds (the planner's dependents wait for the plan) cannot close
        // a cycle, as the plan's tasks depend on nothing outside it; checked all the same.
        if petgraph::algo::toposort(&grown.graph, None).is_err() {
            return Err("the plan would close a cycle through the planner's dependents".into());
        }
        Ok(grown)
    }

    /// The innermost child workflow task `task` is of, by its agent (`None`: the file's own).
    fn child_of(&self, task: usize) -> Option<usize> {
        let agent = *self.tasks.get(task)?.target.agents().first()?;
        let id = &self.tasks[task].id;
        self.children
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.agents.contains(&agent)
                    && id
                        .strip_prefix(c.owner.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .max_by_key(|(_, c)| c.owner.len())
            .map(|(i, _)| i)
    }

    /// The workflow grown with `plan`, the output of `planner`, a task of child workflow
    /// `child`: the plan is checked as the child's (its agents, its ids, its tenant: the
    /// run's), exactly as a top-level planner's is against the file, then joins this workflow
    /// as the child's tasks did (`<owner>.<id>`, the child's agents and mutex groups).
    fn grow_in_child(
        &self,
        planner: usize,
        plan: &Json,
        child: usize,
        depth: u32,
    ) -> Result<Workflow, String> {
        let file = &self.children[child];
        let prefix = format!("{}.", file.owner);
        let Some(local_id) = self.tasks[planner].id.strip_prefix(&prefix) else {
            return Err("the planner is not a task of its child workflow".into());
        };
        let mut inner = validate(Arc::clone(&file.source), &file.params, Some(&self.tenant))
            .map_err(|p| {
                format!(
                    "child workflow `{}` does not check again: {}",
                    file.source.path.display(),
                    p.iter()
                        .take(4)
                        .map(Diagnostic::brief)
                        .collect::<Vec<_>>()
                        .join(" · ")
                )
            })?;
        inner.overrides.clone_from(&file.params);
        let Some(local) = inner.tasks.iter().position(|t| t.id == local_id) else {
            return Err(format!(
                "child workflow `{}` has no task `{}` (did the file change since the run started?)",
                file.source.path.display(),
                quoted(local_id)
            ));
        };
        // The run's bounds, not the child file's own.
        let room = self.max_tasks.saturating_sub(self.tasks.len());
        inner.max_tasks = inner.tasks.len().saturating_add(room);
        inner.max_plan_depth = self.max_plan_depth;
        inner.tasks[local].depth = self.tasks[planner].depth;
        let grown_inner = inner.grow(local, plan)?;
        let before = inner.tasks.len();
        // Where each of the child's tasks is in this workflow.
        let here: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut at = Vec::with_capacity(grown_inner.tasks.len());
        for task in &inner.tasks {
            let id = format!("{prefix}{}", task.id);
            let Some(&i) = here.get(id.as_str()) else {
                return Err(format!(
                    "task `{}` of the child workflow is not in the run (did the file change?)",
                    quoted(&id)
                ));
            };
            at.push(i);
        }
        let agent_base = file.agents.start;
        let child_agents: HashSet<&str> = inner.agents.iter().map(|a| a.name.as_str()).collect();
        let mut tasks = self.tasks.clone();
        at.extend(self.tasks.len()..self.tasks.len() + (grown_inner.tasks.len() - before));
        for task in &grown_inner.tasks[before..] {
            let mut task = task.clone();
            task.id = format!("{prefix}{}", task.id);
            task.target = match task.target {
                super::Target::Agent(a) => super::Target::Agent(agent_base + a),
                super::Target::Capability { name, agents } => super::Target::Capability {
                    name,
                    agents: agents.into_iter().map(|a| agent_base + a).collect(),
                },
            };
            task.deps = task.deps.iter().map(|&d| at[d]).collect();
            task.mutex = task.mutex.map(|m| format!("{prefix}{m}"));
            if let Some(doctor) = &task.stall.diagnostic_agent
                && child_agents.contains(doctor.as_str())
            {
                task.stall.diagnostic_agent = Some(format!("{prefix}{doctor}"));
            }
            task.child_planned = true;
            tasks.push(task);
        }
        let mut grown = Workflow {
            tasks,
            ..self.clone()
        };
        // The child's file as its plans have grown it: the next plan there is checked
        // against it.
        grown.children[child].source = Arc::clone(&grown_inner.source);
        let grown = self.splice(planner, grown, depth)?;
        if petgraph::algo::toposort(&grown.graph, None).is_err() {
            return Err("the plan would close a cycle through the planner's dependents".into());
        }
        Ok(grown)
    }

    /// `grown` with this workflow's tasks in their places (and the dependencies earlier plans
    /// added), the plan's after them, and the planner's dependents waiting for the plan.
    fn splice(&self, planner: usize, grown: Workflow, depth: u32) -> Result<Workflow, String> {
        let at: HashMap<String, usize> = grown
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut grown = grown;
        let mut from_grown: Vec<Option<TaskDef>> = std::mem::take(&mut grown.tasks)
            .into_iter()
            .map(Some)
            .collect();
        // `place[index in grown] = index in the grown workflow`.
        let mut place = vec![usize::MAX; from_grown.len()];
        let mut tasks = Vec::with_capacity(from_grown.len() + self.tasks.len());
        for (i, old) in self.tasks.iter().enumerate() {
            let found = at.get(old.id.as_str()).copied();
            match found.and_then(|g| from_grown[g].take().map(|t| (g, t))) {
                Some((g, mut task)) => {
                    place[g] = i;
                    task.deps.clone_from(&old.deps);
                    task.depth = old.depth;
                    tasks.push(task);
                }
                None if is_carried(old) => tasks.push(old.clone()),
                None => {
                    return Err(format!(
                        "task `{}` is gone from the workflow checked again with the plan (did a file it splits change?)",
                        old.id
                    ));
                }
            }
        }
        let before = self.tasks.len();
        for (g, task) in from_grown.into_iter().enumerate() {
            if let Some(task) = task {
                place[g] = tasks.len();
                tasks.push(task);
            }
        }
        for task in &mut tasks[before..] {
            task.deps = task.deps.iter().map(|&d| place[d]).collect();
            task.depth = depth;
        }
        // The plan's last tasks: those no other task of the plan depends on.
        let depended: HashSet<usize> = tasks[before..]
            .iter()
            .flat_map(|t| t.deps.iter().copied())
            .collect();
        let last: Vec<usize> = (before..tasks.len())
            .filter(|i| !depended.contains(i))
            .collect();
        // In the planner's place among their dependencies: what they see comes in the order
        // they named it, whichever plan was spliced first.
        for dependent in self.graph.neighbors(NodeIndex::new(planner)) {
            let deps = &mut tasks[dependent.index()].deps;
            let at = deps
                .iter()
                .position(|&d| d == planner)
                .map_or(deps.len(), |p| p + 1);
            deps.splice(at..at, last.iter().copied());
        }
        let graph = dag(tasks.iter().map(|t| t.deps.as_slice()));
        compute_critical_paths(&graph, &mut tasks);
        Ok(Workflow {
            tasks,
            graph,
            overrides: self.overrides.clone(),
            max_tasks: self.max_tasks,
            max_plan_depth: self.max_plan_depth,
            ..grown
        })
    }
}

/// Whether `task` was added while the run went on and is in no file: an iteration of a loop
/// (the file has only each loop's first), or a task of a plan of a planner inside a child
/// workflow (the child's file is not re-read with it).
fn is_carried(task: &TaskDef) -> bool {
    task.child_planned || task.iteration.as_ref().is_some_and(|it| it.n > 1)
}

/// Task `i` of a plan as a workflow file's task: its id and dependencies prefixed with the
/// planner's id, and depending on the planner when it depends on none of the plan's.
fn plan_task(
    planner: &str,
    i: usize,
    task: &Json,
    own: &HashSet<&str>,
) -> Result<toml::Value, String> {
    let n = i + 1;
    let Some(task) = task.as_object() else {
        return Err(format!("task {n} of the plan is not an object"));
    };
    let Some(raw_id) = task.get("id").and_then(Json::as_str) else {
        return Err(format!("task {n} of the plan has no `id` (a string)"));
    };
    // Checked as any id is, once written; quoted (bounded, inert) in messages.
    let id = quoted(raw_id);
    for (key, why) in REFUSED_KEYS {
        if task.contains_key(key) {
            return Err(format!("task `{id}` of the plan: {why}"));
        }
    }
    let mut task = task.clone();
    task.insert("id".into(), Json::String(format!("{planner}.{raw_id}")));
    let deps = match task.remove("depends_on") {
        None => Vec::new(),
        Some(Json::Array(deps)) => deps
            .iter()
            .map(|d| match d.as_str() {
                Some(d) if own.contains(d) => Ok(Json::String(format!("{planner}.{d}"))),
                Some(d) => Err(format!(
                    "task `{id}` of the plan depends on `{}`, which is not a task of the plan (a plan's tasks depend only on each other)",
                    quoted(d)
                )),
                None => Err(format!(
                    "task `{id}` of the plan: `depends_on` lists the plan's task ids"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format!(
                "task `{id}` of the plan: `depends_on` is a list of the plan's task ids"
            ));
        }
    };
    let deps = if deps.is_empty() {
        vec![Json::String(planner.to_owned())]
    } else {
        deps
    };
    task.insert("depends_on".into(), Json::Array(deps));
    toml::Value::try_from(Json::Object(task)).map_err(|e| {
        format!("task `{id}` of the plan holds what a workflow file cannot (a null?): {e}")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Workflow;

    fn planned() -> (tempfile::TempDir, Workflow) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.wasm"), b"").expect("write");
        let text = "[workflow]\nname = \"w\"\n[agents.a]\ncomponent = \"a.wasm\"\n\
                    [agents.p]\ncomponent = \"a.wasm\"\nplanner = true\n\
                    [[tasks]]\nid = \"plan\"\nagent = \"p\"\n";
        let wf = Workflow::parse(text, dir.path().join("w.toml"), &[]).expect("valid");
        (dir, wf)
    }

    #[test]
    fn hostile_plans_are_bounded_inert_errors() {
        let (_dir, wf) = planned();
        let long = "x".repeat(100_000);
        let nest = |depth: usize| (0..depth).fold(json!(1), |v, _| json!({ "v": v }));
        let many: Vec<_> = (0..5_000)
            .map(|i| json!({ "id": format!("t{i}"), "agent": "a" }))
            .collect();
        let hostile = [
            json!({ "tasks": [{ "id": long, "agent": "a" }] }),
            json!({ "tasks": [{ "id": "\u{1b}[2J\u{1b}]0;owned\u{7}", "agent": "a" }] }),
            json!({ "tasks": [{ "id": "../../etc", "agent": "a" }] }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "with": { "v": null } }] }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "depends_on": [1, 2] }] }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "depends_on": ["plan"] }] }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "retry": { "max_attempts": -1 } }] }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "agents": { "evil": {} } }] }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "split": { "file": "/etc/passwd", "parts": 2 } }] }),
            json!({ "tasks": many }),
            json!({ "tasks": [], "agents": {} }),
            json!({ "tasks": "all of them" }),
            json!({ "tasks": [{ "id": "x", "agent": "a", "with": nest(200) }] }),
        ];
        for plan in hostile {
            let shown = plan.to_string().chars().take(80).collect::<String>();
            let e = wf.grow(0, &plan).expect_err(&shown);
            assert!(e.len() < 8 << 10, "{shown}: a {} byte message", e.len());
            assert!(
                !e.contains('\u{1b}') && !e.contains('\u{7}'),
                "{shown}: {e}"
            );
        }
        // Parameters nest as deep as a file's may (200 levels is past the TOML parser's limit).
        let grown = wf
            .grow(
                0,
                &json!({ "tasks": [{ "id": "x", "agent": "a", "with": nest(20) }] }),
            )
            .expect("a nested parameter is a parameter");
        assert_eq!(grown.tasks.len(), 2);
        assert_eq!(grown.tasks[1].id, "plan.x");
        assert_eq!(grown.tasks[1].deps, [0]);
    }
}
