//! Blocked tasks: a running attempt that reports no progress for its stall timeout is
//! reported (`agent.task.blocked`) and handled by its policy: reported only, cancelled and
//! retried (it ends `blocked`), or handed to a diagnostic agent with a handoff report while it
//! runs on.
//!
//! Each watched attempt has one timer, due when its silence would reach the timeout; when it
//! fires the attempt's heartbeat says whether it was silent all along (report it) or spoke in
//! between (due again a timeout after it last spoke). Nothing scans the running tasks.
//!
//! A diagnosis runs like an attempt: it takes its agent's and its tenant's slots and a budget
//! reservation (it waits for them, without holding up the run), it is settled when it ends,
//! and what it used is charged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use super::grants::{Acquired, AgentSlots, Grant};
use super::retry::Timer;
use super::{Diagnosis, DiagnosisJob, JobKind, Scheduler, handoff};
use crate::model::Name;
use crate::model::events::{EventKind, LastProgress, TaskBlocked, TaskHandoff, TaskRef};
use crate::model::policy::OnBlocked;
use crate::model::port::{Attempt, Executor, Heartbeat, Job};
use crate::model::time::millis;

/// A diagnosis waiting for its agent's slot or the budget.
pub(super) struct PendingDiagnosis {
    task: usize,
    attempt: u32,
    doctor: usize,
    report: Value,
}

impl Scheduler<'_> {
    /// The stall timer of attempt `attempt` of `task` fired.
    pub(super) fn check_stall<E: Executor>(
        &mut self,
        task: usize,
        attempt: u32,
        now: Instant,
        jobs: &mut JoinSet<Attempt>,
        executor: &Arc<E>,
    ) {
        let Some(stall) = self.plan.tasks[task].stall.clone() else {
            return;
        };
        if self.next_attempt(task) != attempt {
            return; // That attempt has ended.
        }
        let Some(run) = self.tasks[task].running.as_mut() else {
            return;
        };
        let silent = run.heartbeat.silent_at(now);
        if silent < stall.timeout {
            // It spoke since: due again a timeout after it last did.
            run.reported = false;
            let due = run.heartbeat.last_sign() + stall.timeout;
            self.timers.push(std::cmp::Reverse((
                due.max(now + Duration::from_millis(1)),
                Timer::Stall(task, attempt),
            )));
            return;
        }
        // Still silent: look again a timeout from now (a report is made once per silence).
        self.timers.push(std::cmp::Reverse((
            now + stall.timeout,
            Timer::Stall(task, attempt),
        )));
        if run.reported {
            return;
        }
        run.reported = true;
        let (agent, last) = (run.agent, run.heartbeat.last());
        self.meter.blocked += 1;
        let task_ref = self.task_ref(task, Some(agent), attempt);
        self.shared.bus.publish(EventKind::TaskBlocked(TaskBlocked {
            task: task_ref,
            stalled_ms: millis(silent),
            stall_timeout_ms: millis(stall.timeout),
            last_progress: last
                .clone()
                .map(|(fraction, message)| LastProgress { fraction, message }),
            action: stall.action,
        }));
        match stall.action {
            OnBlocked::Report => {}
            OnBlocked::Retry => {
                if let Some(run) = self.tasks[task].running.as_mut() {
                    run.stopped_blocked = true;
                    run.cancel.cancel();
                }
            }
            OnBlocked::Diagnose => self.diagnose(
                task,
                agent,
                attempt,
                silent,
                stall.timeout,
                last,
                jobs,
                executor,
            ),
        }
    }

    /// Hands a blocked attempt's report to its diagnostic agent (once per attempt).
    #[allow(clippy::too_many_arguments)]
    fn diagnose<E: Executor>(
        &mut self,
        task: usize,
        agent: usize,
        attempt: u32,
        silent: Duration,
        timeout: Duration,
        last: Option<(f32, String)>,
        jobs: &mut JoinSet<Attempt>,
        executor: &Arc<E>,
    ) {
        let Some(doctor) = self.plan.tasks[task].diagnostic_agent else {
            return;
        };
        let Some(run) = self.tasks[task].running.as_mut() else {
            return;
        };
        if run.diagnosed {
            return;
        }
        run.diagnosed = true;
        let wf = self.wf();
        let earlier: Vec<(String, Attempt)> = self.tasks[task]
            .attempts
            .iter()
            .map(|(a, at)| (self.plan.agents[*a].name.clone(), at.clone()))
            .collect();
        let report = handoff::blocked(
            &self.run_info(),
            &wf.tasks[task].id,
            &self.plan.agents[agent].name,
            attempt,
            &wf.tasks[task].params,
            millis(silent),
            millis(timeout),
            last,
            &earlier,
            (self.shared.blackboard)(),
        );
        self.pending_diagnoses.push(PendingDiagnosis {
            task,
            attempt,
            doctor,
            report,
        });
        self.retry_diagnoses(jobs, executor);
    }

    /// Starts the diagnoses whose agent and budget are free now; the others wait on them.
    pub(super) fn retry_diagnoses<E: Executor>(
        &mut self,
        jobs: &mut JoinSet<Attempt>,
        executor: &Arc<E>,
    ) {
        if self.pending_diagnoses.is_empty() || self.cancelled {
            return;
        }
        for pending in std::mem::take(&mut self.pending_diagnoses) {
            // A diagnosis is of a running attempt: once that has ended there is none to make.
            let live = self.tasks[pending.task].running.is_some()
                && self.next_attempt(pending.task) == pending.attempt;
            if !live {
                continue;
            }
            let score = |a: usize| self.shared.governor.score(&self.plan.agents[a].key).value();
            let slots = AgentSlots {
                limits: &self.agent_limits,
                slots: &self.agent_slots,
                score: &score,
            };
            match self.resources.acquire_side(pending.doctor, &slots) {
                Acquired::Granted(doctor, grant) => {
                    self.start_diagnosis(pending, doctor, grant, jobs, executor)
                }
                Acquired::Parked => self.pending_diagnoses.push(pending),
                // No budget is left for it: the blocked task runs on undiagnosed.
                Acquired::Exhausted(_) => {}
            }
        }
    }

    fn start_diagnosis<E: Executor>(
        &mut self,
        pending: PendingDiagnosis,
        doctor: usize,
        grant: Grant,
        jobs: &mut JoinSet<Attempt>,
        executor: &Arc<E>,
    ) {
        let wf = self.wf();
        let node = format!("{}.diagnosis", wf.tasks[pending.task].id);
        let job = Job {
            key: Name::from(crate::claims::diagnosis_key(
                &self.plan.run_id,
                &wf.tasks[pending.task].id,
                pending.attempt,
            )),
            task: None,
            task_ref: TaskRef {
                branch: Name::from(format!("{}.{node}", wf.name)),
                node: Name::from(node),
                agent: self.agent_names[doctor].clone(),
                attempt: pending.attempt,
            },
            agent: doctor,
            limits: grant.reservation.limits,
            heartbeat: Arc::new(Heartbeat::new()),
            params: Arc::from(pending.report.to_string()),
            upstream: Vec::new(),
            cancel: self.shared.cancel.child_token(),
            keep_files: false,
        };
        let executor = Arc::clone(executor);
        let handle = jobs.spawn(async move { executor.execute(job).await });
        self.jobs.insert(
            handle.id(),
            JobKind::Diagnosis(Box::new(DiagnosisJob {
                task: pending.task,
                attempt: pending.attempt,
                agent: doctor,
                report: pending.report,
                grant,
            })),
        );
    }

    /// A diagnosis ended: what it used is charged, and its answer is on the record.
    pub(super) fn diagnosis_ended(
        &mut self,
        task: usize,
        number: u32,
        agent: usize,
        report: Value,
        grant: Grant,
        attempt: Attempt,
    ) {
        let Grant { reservation, .. } = grant;
        reservation.settle(attempt.fuel_used, attempt.latency);
        let name = self.plan.agents[agent].name.clone();
        let diagnosis = attempt
            .output
            .as_ref()
            .and_then(|o| serde_json::from_str(o.get()).ok());
        self.shared.bus.publish(EventKind::TaskHandoff(TaskHandoff {
            task: self.task_ref(task, None, number),
            diagnostic_agent: name.clone(),
            status: attempt.status,
            diagnosis,
            error: attempt.error.clone(),
        }));
        self.diagnoses.push(Diagnosis {
            node: self.wf().tasks[task].id.clone(),
            attempt: number,
            agent: name,
            report,
            attempt_result: attempt,
        });
    }
}
