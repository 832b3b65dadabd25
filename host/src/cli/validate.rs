//! `wasm-orch validate`: every check short of running — the file, its DAG, and its components
//! (compiled and checked against `sub-agent`).

use super::{INVALID, SUCCESS, ValidateArgs, report_error};
use crate::Workflow;

pub(super) async fn validate(args: ValidateArgs) -> u8 {
    let workflow = match Workflow::from_file_with_params(&args.file, &args.params) {
        Ok(w) => w,
        Err(e) => return report_error(&e),
    };
    let runtime = match args.runtime.build() {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    match runtime.check(&workflow).await {
        Ok(agents) => {
            println!(
                "{}: workflow `{}` is valid: {} tasks, {} agents ({})",
                args.file.display(),
                workflow.name(),
                workflow.task_ids().count(),
                agents.len(),
                agents.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            SUCCESS
        }
        Err(e) => {
            report_error(&e);
            INVALID
        }
    }
}
