//! `wasm-orch run`: run a workflow, show it, write its results and events, exit with its
//! outcome.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Style};
use super::{CANCELLED, INVALID, RunArgs, SUCCESS, TASK_FAILED, report_error, summary, view};
use crate::events::{Event, EventStream};
use crate::report::RunReport;
use crate::{RunOptions, RunStatus, Workflow};

pub(super) async fn run(args: RunArgs, verbose: bool) -> u8 {
    if is_stdout(args.output.as_deref()) && is_stdout(args.events.as_deref()) {
        eprintln!("error: --output and --events cannot both be `-` (stdout)");
        return INVALID;
    }
    let workflow = match Workflow::from_file_with_params(&args.file, &args.params) {
        Ok(w) => w,
        Err(e) => return report_error(&e),
    };
    #[cfg(feature = "nats")]
    let runtime =
        match super::worker::runtime(&args.runtime, args.nats.as_deref(), &args.pool).await {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
    #[cfg(not(feature = "nats"))]
    let runtime = match args.runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => return report_error(&e),
    };
    // Listen for Ctrl-C before anything runs: the handler must be in place when the first
    // interrupt can come.
    let interrupts = match Interrupts::listen() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: cannot listen for Ctrl-C: {e}");
            return INVALID;
        }
    };
    let mut options = RunOptions::new();
    if let Some(n) = args.max_concurrency {
        options = options.max_concurrency(n as usize);
    }
    if let Some(tenant) = &args.tenant {
        options = options.tenant(tenant);
    }
    if let Some(id) = &args.run_id {
        options = options.run_id(id);
    }
    #[cfg(feature = "nats")]
    let statebus = match &args.nats {
        Some(url) => match crate::statebus::StateBus::connect(url).await {
            Ok(bus) => Some(bus),
            Err(e) => {
                eprintln!("error: --nats: {e}");
                return INVALID;
            }
        },
        None => None,
    };
    let run = match runtime.start(&workflow, options).await {
        Ok(run) => run,
        Err(e) => return report_error(&e),
    };
    #[cfg(feature = "nats")]
    let publisher = statebus
        .as_ref()
        .map(|bus| bus.publish_run(workflow.tenant(), &run.feed()));
    let code = follow(
        run,
        Follow {
            output: args.output,
            events: args.events,
            plain: args.plain,
            verbose,
            append: false,
            history: Vec::new(),
        },
        interrupts,
    )
    .await;
    #[cfg(feature = "nats")]
    if let Some(publisher) = publisher {
        // Every event handed to NATS before the process ends (bounded: a server that is down
        // does not hold the exit).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), publisher).await;
    }
    code
}

/// How `follow` shows and writes a run.
pub(super) struct Follow {
    pub(super) output: Option<PathBuf>,
    pub(super) events: Option<PathBuf>,
    pub(super) plain: bool,
    pub(super) verbose: bool,
    /// The run's `events.jsonl` is added to, not rewritten (a resumed run).
    pub(super) append: bool,
    /// A resumed run's events before it resumed (what its live view starts from).
    pub(super) history: Vec<std::sync::Arc<crate::events::Event>>,
}

/// Shows a run until it ends, writes its events and results, prints its summary; returns
/// the exit code.
pub(super) async fn follow(run: crate::Run, how: Follow, mut interrupts: Interrupts) -> u8 {
    // Ctrl-C once: cancel (running guests stop promptly). Twice: leave now.
    let cancel = run.cancel_handle();
    tokio::spawn(async move {
        if interrupts.next().await {
            eprintln!("\ncancelling the run (Ctrl-C again to quit at once)");
            cancel.cancel();
            if interrupts.next().await {
                eprint!("\x1b[?25h");
                std::process::exit(i32::from(CANCELLED));
            }
        }
    });

    let journal_path = run.directory().join("events.jsonl");
    let mut journal_targets = vec![(journal_path, how.append)];
    if let Some(path) = &how.events {
        journal_targets.push((path.clone(), false));
    }
    let journal = tokio::task::spawn_blocking({
        let events = run.events();
        move || write_events(events, &journal_targets)
    });
    let live = !how.plain
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let history = if live { how.history } else { Vec::new() };
    let shown = tokio::spawn(view::show(run.events(), live, how.verbose, history));

    let report = match run.wait().await {
        Ok(report) => report,
        Err(e) => return report_error(&e),
    };
    let _ = shown.await;
    if let Err(e) = journal.await {
        eprintln!("warning: the events writer failed: {e}");
    }
    let results_path = report.directory.join("results.json");
    let mut result_targets = vec![results_path.clone()];
    if let Some(path) = &how.output {
        result_targets.push(path.clone());
    }
    for target in &result_targets {
        if let Err(e) = write_results(&report, target) {
            eprintln!(
                "warning: could not write results to `{}`: {e}",
                target.display()
            );
        }
    }
    let (width, _) = format::terminal_size();
    eprint!("\n{}", summary::render(&report, Style::for_stderr(), width));
    eprintln!("results: {}", results_path.display());
    match report.status {
        RunStatus::Succeeded => SUCCESS,
        RunStatus::Cancelled => CANCELLED,
        _ => TASK_FAILED,
    }
}

fn is_stdout(path: Option<&Path>) -> bool {
    path.is_some_and(|p| p == Path::new("-"))
}

fn open(path: &Path, append: bool) -> std::io::Result<Box<dyn Write + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdout()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    Ok(Box::new(BufWriter::new(file)))
}

/// Writes every event as a JSON line to each target, as they come (stdout is flushed per
/// line so a pipe sees events live). A target that fails is reported and dropped; the others
/// go on, so a closed pipe never costs the run's own journal.
fn write_events(mut events: EventStream, targets: &[(PathBuf, bool)]) {
    let mut writers: Vec<(&PathBuf, Box<dyn Write + Send>)> = Vec::new();
    for (target, append) in targets {
        match open(target, *append) {
            Ok(w) => writers.push((target, w)),
            Err(e) => eprintln!(
                "warning: cannot write events to `{}`: {e}",
                target.display()
            ),
        }
    }
    while let Some(event) = events.blocking_next() {
        let line = json_line(&event);
        writers.retain_mut(|(target, w)| {
            let live = target.as_path() == Path::new("-");
            match w
                .write_all(&line)
                .and_then(|()| if live { w.flush() } else { Ok(()) })
            {
                Ok(()) => true,
                Err(e) => {
                    eprintln!(
                        "warning: stopped writing events to `{}`: {e}",
                        target.display()
                    );
                    false
                }
            }
        });
    }
    for (target, w) in &mut writers {
        if let Err(e) = w.flush() {
            eprintln!(
                "warning: events to `{}` may be incomplete: {e}",
                target.display()
            );
        }
    }
}

fn json_line(event: &Arc<Event>) -> Vec<u8> {
    // Events are plain data: serializing one cannot fail.
    let mut line = serde_json::to_vec(event.as_ref()).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Writes the results document: atomically for a file (a temporary file, then a rename).
pub(super) fn write_results(report: &RunReport, target: &Path) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    if target == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(&json)?;
        out.write_all(b"\n")?;
        return out.flush();
    }
    let tmp = target.with_extension("json.tmp");
    let mut w = open(&tmp, false)?;
    w.write_all(&json)?;
    w.write_all(b"\n")?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, target)
}

/// Ctrl-C, listened for from the moment this is created.
pub(super) struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(super) fn listen() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    /// Waits for the next Ctrl-C; `false` if no more can come.
    async fn next(&mut self) -> bool {
        #[cfg(unix)]
        return self.signal.recv().await.is_some();
        #[cfg(not(unix))]
        return tokio::signal::ctrl_c().await.is_ok();
    }
}
