//! Workflows inside workflows: a task with `workflow = "sub.toml"` is replaced by the child
//! workflow's tasks, inlined into the parent when it is validated.
//!
//! The child is validated as a file of its own (its problems name its file and lines), with
//! the task's `with` as its parameters and the parent's tenant. Its agents join the parent's
//! as `<task>.<agent>`, its tasks as `<task>.<id>` (so their blackboard branches are under the
//! task's), its mutex groups as `<task>.<group>`. The child's first tasks depend on what the
//! task depended on; the parent's tasks that depended on the task depend on the child's last
//! tasks instead, and see their outputs in its place. The child runs in the parent's run:
//! within its budgets, its error budget, its tenant's quotas; the child file's own `[workflow]`
//! settings (budget, retry, max_concurrency, tenant) give way to the parent's.
//!
//! A task that runs a child workflow in a `loop` inlines its first iteration, as
//! `<task>.1.<id>`; the run adds the next ones as the loop goes on (see `looping`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{AgentDef, ChildFile, Iteration, Target, TaskDef, Workflow};

/// `tasks` (the parent's, in order) with each child `(place, workflow)` inlined in place of
/// the task at `place`; `agents` and `mutexes` gain the children's.
pub(super) fn inline(
    tasks: Vec<TaskDef>,
    agents: &mut Vec<AgentDef>,
    mutexes: &mut HashMap<String, usize>,
    files: &mut Vec<ChildFile>,
    children: Vec<(usize, Workflow)>,
) -> Vec<TaskDef> {
    let placeholders: HashSet<usize> = children.iter().map(|(p, _)| *p).collect();
    let mut all = tasks;
    // What each placeholder is replaced by, for its dependents: the child's last tasks.
    let mut instead: HashMap<usize, Vec<usize>> = HashMap::new();
    for (place, child) in children {
        // A loop over the child: this is its first iteration, `<task>.1.<id>`.
        let looped = all[place]
            .max_iterations
            .map(|max| (all[place].id.clone(), max));
        // Its agents and mutex groups are the loop's, for every iteration.
        let owner = all[place].id.clone();
        let prefix = match &looped {
            Some((id, _)) => format!("{id}.1"),
            None => owner.clone(),
        };
        let before = all[place].deps.clone();
        let agent_base = agents.len();
        for agent in &child.agents {
            agents.push(AgentDef {
                name: format!("{owner}.{}", agent.name),
                ..agent.clone()
            });
        }
        for (group, capacity) in &child.mutexes {
            mutexes.insert(format!("{owner}.{group}"), *capacity);
        }
        // Where its planners' plans are checked (a loop's body has none).
        if looped.is_none() {
            files.push(ChildFile {
                owner: owner.clone(),
                source: Arc::clone(&child.source),
                params: child.overrides.clone(),
                agents: agent_base..agent_base + child.agents.len(),
            });
            files.extend(child.children.iter().map(|inner| ChildFile {
                owner: format!("{owner}.{}", inner.owner),
                agents: agent_base + inner.agents.start..agent_base + inner.agents.end,
                ..inner.clone()
            }));
        }
        let base = all.len();
        let depended: HashSet<usize> = child
            .tasks
            .iter()
            .flat_map(|t| t.deps.iter().copied())
            .collect();
        instead.insert(
            place,
            (0..child.tasks.len())
                .filter(|i| !depended.contains(i))
                .map(|i| base + i)
                .collect(),
        );
        let Workflow {
            tasks: child_tasks,
            agents: child_agents,
            ..
        } = child;
        let last = instead.get(&place).cloned().unwrap_or_default();
        for (i, mut task) in child_tasks.into_iter().enumerate() {
            task.id = format!("{prefix}.{}", task.id);
            task.iteration = match &looped {
                Some((id, max)) => Some(Iteration {
                    looped: id.clone(),
                    n: 1,
                    max: *max,
                    end: last.contains(&(base + i)),
                }),
                // The child's own loop over a workflow: named below this task now.
                None => task.iteration.map(|it| Iteration {
                    looped: format!("{owner}.{}", it.looped),
                    ..it
                }),
            };
            task.target = match task.target {
                Target::Agent(a) => Target::Agent(agent_base + a),
                Target::Capability { name, agents } => Target::Capability {
                    name,
                    agents: agents.into_iter().map(|a| agent_base + a).collect(),
                },
            };
            task.deps = if task.deps.is_empty() {
                before.clone()
            } else {
                task.deps.iter().map(|&d| base + d).collect()
            };
            task.mutex = task.mutex.map(|m| format!("{owner}.{m}"));
            if let Some(doctor) = &task.stall.diagnostic_agent
                && child_agents.iter().any(|a| &a.name == doctor)
            {
                task.stall.diagnostic_agent = Some(format!("{owner}.{doctor}"));
            }
            all.push(task);
        }
    }
    // Dependencies on a placeholder become dependencies on what replaced it (a child whose
    // first tasks depended on another child's task: on that child's last tasks), in place.
    let resolve = |deps: &[usize]| -> Vec<usize> {
        let mut out = Vec::with_capacity(deps.len());
        let mut seen = HashSet::new();
        let mut work: Vec<usize> = deps.iter().rev().copied().collect();
        while let Some(d) = work.pop() {
            match instead.get(&d) {
                Some(replaced) => work.extend(replaced.iter().rev()),
                None if seen.insert(d) => out.push(d),
                None => {}
            }
        }
        out
    };
    for task in &mut all {
        task.deps = resolve(&task.deps);
    }
    // The placeholders go; everything after them moves up.
    let mut place = vec![usize::MAX; all.len()];
    let mut next = 0;
    for (i, slot) in place.iter_mut().enumerate() {
        if !placeholders.contains(&i) {
            *slot = next;
            next += 1;
        }
    }
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| !placeholders.contains(i))
        .map(|(_, mut task)| {
            task.deps = task.deps.iter().map(|&d| place[d]).collect();
            task
        })
        .collect()
}
