//! `wasm-orch resume` and `wasm-orch runs`: what the journal knows of runs.

use std::time::Duration;

use super::format::{self, Style};
use super::run::{Follow, Interrupts, follow};
use super::{INVALID, ResumeArgs, RunsAction, RunsArgs, SUCCESS, report_error, summary};
use crate::RunOptions;
use crate::events::inert;
use crate::runs::{RunFilter, RunState};

pub(super) async fn resume(args: ResumeArgs, verbose: bool) -> u8 {
    let runtime = match args.runtime.build() {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    let interrupts = match Interrupts::listen() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: cannot listen for Ctrl-C: {e}");
            return INVALID;
        }
    };
    let mut options = RunOptions::new();
    if let Some(tenant) = &args.tenant {
        options = options.tenant(tenant);
    }
    // What the live view starts from: the states its journal holds (not the guests' chatter).
    let mut history = Vec::new();
    let mut from = 0;
    while let Ok(page) = runtime.run_events(&args.run_id, from, 10_000).await {
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        from = last + 1;
        history.extend(page.into_iter().filter(|e| {
            matches!(
                e.kind,
                crate::events::EventKind::PlanCreated(_) | crate::events::EventKind::TaskStatus(_)
            )
        }));
    }
    let run = match runtime.resume(&args.run_id, options).await {
        Ok(run) => run,
        Err(e) => {
            // Resuming a run that had succeeded is done already: say so, and put its results
            // back if its process stopped before it wrote them.
            if let Ok(Some(report)) = runtime.run_report(&args.run_id).await
                && report.status == crate::RunStatus::Succeeded
            {
                let path = report.directory.join("results.json");
                if !path.exists()
                    && let Err(e) = super::run::write_results(&report, &path)
                {
                    eprintln!("error: cannot write `{}`: {e}", path.display());
                    return INVALID;
                }
                eprintln!(
                    "run `{}` succeeded already: nothing to resume\nresults: {}",
                    inert(&args.run_id),
                    path.display()
                );
                return SUCCESS;
            }
            return report_error(&e);
        }
    };
    follow(
        run,
        Follow {
            output: args.output,
            events: args.events,
            plain: args.plain,
            verbose,
            append: true,
            history,
        },
        interrupts,
    )
    .await
}

pub(super) async fn runs(args: RunsArgs) -> u8 {
    // It reads the journal and runs nothing: no instance pool to reserve (a thousand
    // stacks' guard pages) and unmap again.
    let runtime = match args
        .runtime
        .builder()
        .and_then(|b| b.pooling(false).build())
    {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    match &args.action {
        None => list(&runtime, &args).await,
        Some(RunsAction::Show { run_id }) => show(&runtime, &args, run_id).await,
        Some(RunsAction::Prune { older_than }) => {
            let age = match older_than.as_deref().map(humantime::parse_duration) {
                Some(Ok(age)) => age,
                Some(Err(e)) => {
                    eprintln!("error: `--older-than`: {e} (write it like `7d` or `12h`)");
                    return INVALID;
                }
                None => runtime
                    .retention()
                    .unwrap_or(Duration::from_secs(30 * 24 * 3600)),
            };
            match runtime.prune(age).await {
                Ok(pruned) => {
                    if args.json {
                        println!("{}", serde_json::to_string(&pruned).unwrap_or_default());
                    } else {
                        println!(
                            "pruned {} runs that ended over {} ago and {} outputs; the journal went from {} to {}",
                            pruned.runs,
                            age_text(age),
                            pruned.outputs,
                            format::bytes(pruned.bytes_before),
                            format::bytes(pruned.bytes_after)
                        );
                    }
                    SUCCESS
                }
                Err(e) => report_error(&e),
            }
        }
    }
}

async fn list(runtime: &crate::Runtime, args: &RunsArgs) -> u8 {
    let mut filter = RunFilter::new().limit(args.limit);
    if let Some(tenant) = &args.tenant {
        filter = filter.tenant(tenant);
    }
    if let Some(status) = &args.status {
        let state = match status.as_str() {
            "running" => RunState::Running,
            "interrupted" => RunState::Interrupted,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            other => {
                eprintln!(
                    "error: `--status {}`: use running, interrupted, succeeded, failed or cancelled",
                    inert(other)
                );
                return INVALID;
            }
        };
        filter = filter.state(state);
    }
    let runs = match runtime.runs(filter).await {
        Ok(runs) => runs,
        Err(e) => return report_error(&e),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return SUCCESS;
    }
    let s = Style::for_stdout();
    println!(
        "{}",
        s.bold(&format!(
            "{:<24}  {:<12}  {:<16}  {:<11}  {:>11}  AGE",
            "RUN", "TENANT", "WORKFLOW", "STATE", "PROGRESS"
        ))
    );
    let now = std::time::SystemTime::now();
    for r in &runs {
        let age = now.duration_since(r.created_at.0).unwrap_or_default();
        println!(
            "{:<24}  {:<12}  {:<16}  {:<11}  {:>11}  {}",
            r.run_id,
            format::fit(&r.tenant, 12),
            format::fit(&r.workflow, 16),
            r.state,
            format!("{}/{}", r.settled, r.tasks),
            format::age(age)
        );
    }
    if runs.is_empty() {
        println!("(no runs)");
    }
    SUCCESS
}

async fn show(runtime: &crate::Runtime, args: &RunsArgs, run_id: &str) -> u8 {
    let summary_row = match runtime.run_summary(run_id).await {
        Ok(Some(r)) if args.tenant.as_ref().is_none_or(|t| *t == r.tenant) => r,
        Ok(_) => {
            eprintln!("error: no run `{}`: see `wasm-orch runs`", inert(run_id));
            return INVALID;
        }
        Err(e) => return report_error(&e),
    };
    match runtime.run_report(run_id).await {
        Ok(Some(report)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                let (width, _) = format::terminal_size();
                print!("{}", summary::render(&report, Style::for_stdout(), width));
            }
            SUCCESS
        }
        Ok(None) => {
            // Not ended: what the journal says so far.
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary_row).unwrap_or_default()
                );
            } else {
                println!(
                    "run {} of {} ({}): {}, {}/{} tasks ended; resume it with `wasm-orch resume {}`",
                    summary_row.run_id,
                    summary_row.workflow,
                    summary_row.tenant,
                    summary_row.state,
                    summary_row.settled,
                    summary_row.tasks,
                    summary_row.run_id
                );
            }
            SUCCESS
        }
        Err(e) => report_error(&e),
    }
}

/// An age as the operator wrote it, roughly: `7 days`, `12h`.
fn age_text(age: Duration) -> String {
    let secs = age.as_secs();
    match secs / 86_400 {
        1 if secs.is_multiple_of(86_400) => "1 day".into(),
        days if days > 1 && secs.is_multiple_of(86_400) => format!("{days} days"),
        _ => humantime::format_duration(age).to_string(),
    }
}
