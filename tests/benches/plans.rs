//! What a plan costs to join a run (`cargo xtask bench`): a planner returns a 30-step
//! pipeline of no-op tasks in a workflow that has N other tasks already (N = 0, 1,000,
//! 10,000), and the time from the planner's attempt ending to its `succeeded` event is
//! printed: the host writes the plan into the workflow, checks the whole again and splices it
//! in within that span. Median of 5 runs each, release build; nothing is asserted.

use std::time::Duration;

use wasm_orch::events::EventKind;
use wasm_orch::{RunOptions, TaskStatus, Workflow};
use wasm_orch_tests::{Scratch, guest, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 5;

fn flow(others: usize) -> String {
    let steps: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    let mut toml = format!(
        "[workflow]\nname = \"plans\"\nmax_concurrency = 16\nmax_tasks = {}\n\
         [agents.planner]\ncomponent = \"{}\"\nplanner = true\n\
         [agents.noop]\ncomponent = \"{}\"\nworkdir = false\n\
         [[tasks]]\nid = \"plan\"\nagent = \"planner\"\n\
         with = {{ query = \"{}\", step_agent = \"noop\" }}\n",
        others + 100,
        guest("planner").display(),
        guest("noop").display(),
        steps.join(" → ")
    );
    for i in 0..others {
        toml.push_str(&format!("[[tasks]]\nid = \"t{i}\"\nagent = \"noop\"\n"));
    }
    toml
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("wasm-orch plans: a 30-task plan joining a run ({cpus} CPUs, release build)");
    println!(
        "  {:>12} {:>16} {:>16}",
        "other tasks", "splice median", "splice max"
    );
    tokio.block_on(async {
        let scratch = Scratch::new();
        let runtime = scratch.runtime();
        for others in [0, 1_000, 10_000] {
            let path = scratch.workflow(&format!("plans-{others}.toml"), &flow(others));
            let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            let mut spans = Vec::new();
            for _ in 0..RUNS {
                let done = scratch
                    .run_workflow(&runtime, &workflow, RunOptions::new())
                    .await;
                assert_eq!(done.report.tasks.len(), others + 31, "the plan joined");
                let ended = done.events_of("plan").find_map(|e| match &e.kind {
                    EventKind::TaskStatus(u) if u.status == TaskStatus::Succeeded => {
                        Some((u.finished_at?, e.at))
                    }
                    _ => None,
                });
                if let Some((finished, published)) = ended {
                    let span = published
                        .0
                        .duration_since(finished.0)
                        .unwrap_or(Duration::ZERO);
                    spans.push(span.as_secs_f64() * 1000.0);
                }
            }
            spans.sort_by(f64::total_cmp);
            println!(
                "  {:>12} {:>13.2} ms {:>13.2} ms",
                others,
                percentile(&spans, 0.5),
                spans.last().copied().unwrap_or(0.0)
            );
        }
    });
}
