//! `negotiator`: agents that talk while they run (the source documents' ALPHA, BETA and GAMMA).
//!
//! - `role = "party"`: exchanges proposals with its `peer`, one per round, conceding `step`
//!   towards the other's offer each round but never past its `limit`. When the two offers are
//!   within `tolerance`, both agree on their midpoint. When `rounds` pass without agreement,
//!   the party that names a `mediator` hands the conflict to it (which starts the mediator, a
//!   task with `start = "on-message"`), and both accept the mediator's decision.
//! - `role = "mediator"`: takes the handoff (the last proposals), decides their midpoint and
//!   sends the decision to each party.
//! - `role = "probe"`: sends a message to each address of `to` and reports which the host
//!   refused (for tests of the run's and tenant's walls);
//! - `role = "ping"` / `"pong"`: `count` round trips between two tasks (for the benchmark);
//! - `role = "collect"`: takes `count` messages, thinking `think_ms` (in the `sleep` tool)
//!   after each, and returns them in the order it took them (for the tests of resumed
//!   inboxes).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasm_orch_sdk::messages::{self, Message};
use wasm_orch_sdk::{Agent, Context, Error, status, tools};

#[derive(Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
enum Params {
    Party(Party),
    Mediator(Mediator),
    Probe {
        to: Vec<String>,
    },
    /// Sends `count` messages to `peer`, each after the echo of the one before.
    Ping {
        peer: String,
        count: u32,
    },
    /// Echoes every message back to its sender, until one says `"stop"` (or none comes in
    /// `wait_ms`).
    Pong {
        #[serde(default = "long_wait")]
        wait_ms: u64,
    },
    /// Takes `count` messages, each within `wait_ms`, thinking `think_ms` after each.
    Collect {
        count: u32,
        #[serde(default = "wait")]
        wait_ms: u64,
        #[serde(default)]
        think_ms: u64,
    },
}

#[derive(Deserialize)]
struct Party {
    peer: String,
    start: f64,
    limit: f64,
    #[serde(default = "five")]
    step: f64,
    #[serde(default = "four")]
    rounds: u32,
    #[serde(default = "one")]
    tolerance: f64,
    /// Who to hand a conflict to (one party names it).
    mediator: Option<String>,
    #[serde(default = "wait")]
    wait_ms: u64,
}

#[derive(Deserialize)]
struct Mediator {
    #[serde(default = "wait")]
    wait_ms: u64,
}

fn five() -> f64 {
    5.0
}
fn four() -> u32 {
    4
}
fn one() -> f64 {
    1.0
}
fn wait() -> u64 {
    5_000
}
fn long_wait() -> u64 {
    30_000
}

/// What the parties and the mediator say to one another.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
enum Say {
    Proposal {
        round: u32,
        value: f64,
    },
    Handoff {
        reason: String,
        proposals: BTreeMap<String, f64>,
        rounds: u32,
    },
    Decision {
        value: f64,
    },
}

struct Negotiator;

impl Agent for Negotiator {
    type Params = Params;
    type Output = Value;
    const CAPABILITIES: &'static [&'static str] = &["negotiate", "mediate"];

    fn run(cx: Context<Params>) -> Result<Value, Error> {
        let me = cx.task().node.clone();
        match cx.params {
            Params::Party(p) => party(&me, &p),
            Params::Mediator(m) => mediator(&m),
            Params::Probe { to } => Ok(probe(&to)),
            Params::Ping { peer, count } => ping(&peer, count),
            Params::Pong { wait_ms } => pong(wait_ms),
            Params::Collect {
                count,
                wait_ms,
                think_ms,
            } => collect(count, wait_ms, think_ms),
        }
    }
}

/// The next message, or an error naming what it waited for.
fn next(wait_ms: u64, waiting_for: &str) -> Result<Message<Say>, Error> {
    messages::receive::<Say>(Duration::from_millis(wait_ms))?.ok_or_else(|| {
        Error::failed(format!(
            "no message came in {wait_ms} ms (waiting for {waiting_for})"
        ))
    })
}

fn party(me: &str, p: &Party) -> Result<Value, Error> {
    // A step towards the other's offer, never past it nor past this party's own limit.
    let toward = |offer: f64, theirs: f64| {
        if theirs > offer {
            (offer + p.step).min(p.limit.max(offer)).min(theirs)
        } else {
            (offer - p.step).max(p.limit.min(offer)).max(theirs)
        }
    };
    let mut offer = p.start;
    let mut theirs = f64::NAN;
    for round in 1..=p.rounds {
        messages::send(
            &p.peer,
            &Say::Proposal {
                round,
                value: offer,
            },
        )?;
        theirs = loop {
            let m = next(
                p.wait_ms,
                &format!("{}'s proposal of round {round}", p.peer),
            )?;
            match m.body {
                Say::Proposal { round: r, value } if m.from == p.peer && r == round => break value,
                // A mediator has the last word, whenever it speaks.
                Say::Decision { value } => {
                    return Ok(json!({ "agreed": value, "by": m.from, "rounds": round }));
                }
                other => status::log(
                    wasm_orch_sdk::status::Level::Warn,
                    format!("ignored {other:?} from {}", m.from),
                ),
            }
        };
        status::progress(
            round as f32 / p.rounds as f32,
            format!("round {round}: mine {offer}, {}'s {theirs}", p.peer),
        );
        if (offer - theirs).abs() <= p.tolerance {
            return Ok(
                json!({ "agreed": (offer + theirs) / 2.0, "by": "negotiation", "rounds": round }),
            );
        }
        if round < p.rounds {
            offer = toward(offer, theirs);
        }
    }
    status::log(
        wasm_orch_sdk::status::Level::Warn,
        format!(
            "no agreement after {} rounds: mine {offer}, {}'s {theirs}",
            p.rounds, p.peer
        ),
    );
    if let Some(mediator) = &p.mediator {
        let proposals = BTreeMap::from([(me.to_owned(), offer), (p.peer.clone(), theirs)]);
        let handoff = Say::Handoff {
            reason: "CONFLICT".into(),
            proposals,
            rounds: p.rounds,
        };
        messages::send(mediator, &handoff)?;
    }
    loop {
        let m = next(p.wait_ms, "a mediator's decision")?;
        if let Say::Decision { value } = m.body {
            return Ok(json!({ "agreed": value, "by": m.from, "rounds": p.rounds }));
        }
    }
}

fn mediator(m: &Mediator) -> Result<Value, Error> {
    let handoff = next(m.wait_ms, "a handoff")?;
    let Say::Handoff {
        reason,
        proposals,
        rounds,
    } = handoff.body
    else {
        return Err(Error::invalid_input(format!(
            "expected a HANDOFF first, {} sent {:?}",
            handoff.from, handoff.body
        )));
    };
    if proposals.is_empty() {
        return Err(Error::invalid_input("the handoff has no proposals"));
    }
    let value = proposals.values().sum::<f64>() / proposals.len() as f64;
    for party in proposals.keys() {
        messages::send(party, &Say::Decision { value })?;
    }
    status::progress(
        1.0,
        format!("decided {value} after {rounds} rounds ({reason})"),
    );
    Ok(json!({ "decided": value, "reason": reason, "between": proposals, "from": handoff.from }))
}

fn ping(peer: &str, count: u32) -> Result<Value, Error> {
    for n in 1..=count {
        messages::send(peer, &n)?;
        let echo = messages::receive::<Value>(Duration::from_secs(30))?
            .ok_or_else(|| Error::failed(format!("no echo of message {n} came")))?;
        if echo.body != json!(n) {
            return Err(Error::failed(format!(
                "message {n} came back as {}",
                echo.body
            )));
        }
    }
    messages::send(peer, &"stop")?;
    Ok(json!({ "round_trips": count }))
}

fn pong(wait_ms: u64) -> Result<Value, Error> {
    let mut echoed = 0u64;
    loop {
        let m = messages::receive::<Value>(Duration::from_millis(wait_ms))?
            .ok_or_else(|| Error::failed(format!("no message came in {wait_ms} ms")))?;
        if m.body == json!("stop") {
            return Ok(json!({ "echoed": echoed }));
        }
        messages::send(&m.from, &m.body)?;
        echoed += 1;
    }
}

fn collect(count: u32, wait_ms: u64, think_ms: u64) -> Result<Value, Error> {
    let mut got = Vec::new();
    for n in 1..=count {
        let m = messages::receive::<Value>(Duration::from_millis(wait_ms))?.ok_or_else(|| {
            Error::failed(format!(
                "message {n} of {count} did not come in {wait_ms} ms"
            ))
        })?;
        status::progress(
            n as f32 / count as f32,
            format!("took #{} from {}", m.seq, m.from),
        );
        got.push(json!({ "from": m.from, "body": m.body }));
        if think_ms > 0 {
            tools::sleep(Duration::from_millis(think_ms))?;
        }
    }
    Ok(json!({ "got": got }))
}

fn probe(to: &[String]) -> Value {
    let tried: BTreeMap<&str, Value> = to
        .iter()
        .map(|address| {
            let result = match messages::send(address, &json!({ "hello": "from a probe" })) {
                Ok(seq) => json!({ "sent": seq }),
                Err(e) => json!({ "refused": e.to_string() }),
            };
            (address.as_str(), result)
        })
        .collect();
    json!(tried)
}

wasm_orch_sdk::export!(Negotiator);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_orch_sdk::testing::TestRun;

    /// A peer that answers each proposal with `offers`, in turn.
    fn peer(offers: Vec<f64>) -> impl FnMut(Value) -> Vec<Value> {
        let mut offers = offers.into_iter();
        move |body| match serde_json::from_value::<Say>(body) {
            Ok(Say::Proposal { round, .. }) => offers
                .next()
                .map(|value| vec![json!(Say::Proposal { round, value })])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn parties_that_meet_agree_on_the_midpoint() {
        let outcome = TestRun::new(json!({
            "role": "party", "peer": "beta", "start": 10, "limit": 30
        }))
        .node("alpha")
        .peer("beta", peer(vec![40.0, 35.0, 30.0, 25.0]))
        .run::<Negotiator>();
        let out: Value = outcome.output();
        assert_eq!(out["agreed"], 25.0);
        assert_eq!(out["rounds"], 4);
        let mine: Vec<f64> = outcome
            .sent
            .iter()
            .map(|(_, b)| b["value"].as_f64().unwrap_or(-1.0))
            .collect();
        assert_eq!(mine, [10.0, 15.0, 20.0, 25.0], "it conceded step by step");
    }

    #[test]
    fn a_conflict_goes_to_the_mediator_and_its_decision_is_taken() {
        let outcome = TestRun::new(json!({
            "role": "party", "peer": "beta", "start": 10, "limit": 20, "mediator": "gamma"
        }))
        .node("alpha")
        .peer("beta", peer(vec![40.0, 35.0, 30.0, 30.0]))
        .peer("gamma", |body| match serde_json::from_value::<Say>(body) {
            Ok(Say::Handoff { proposals, .. }) => {
                assert_eq!(proposals["alpha"], 20.0);
                assert_eq!(proposals["beta"], 30.0);
                vec![json!(Say::Decision { value: 25.0 })]
            }
            _ => Vec::new(),
        })
        .run::<Negotiator>();
        let out: Value = outcome.output();
        assert_eq!(
            (out["agreed"].as_f64(), out["by"].as_str()),
            (Some(25.0), Some("gamma"))
        );
        assert_eq!(
            outcome.sent.last().map(|(to, _)| to.as_str()),
            Some("gamma")
        );
    }

    #[test]
    fn the_mediator_decides_the_midpoint_and_tells_both() {
        let handoff = Say::Handoff {
            reason: "CONFLICT".into(),
            proposals: BTreeMap::from([("alpha".into(), 20.0), ("beta".into(), 30.0)]),
            rounds: 4,
        };
        let outcome = TestRun::new(json!({ "role": "mediator" }))
            .node("gamma")
            .message("alpha", json!(handoff))
            .peer("beta", |_| Vec::new())
            .run::<Negotiator>();
        let out: Value = outcome.output();
        assert_eq!(out["decided"], 25.0);
        let told: Vec<&str> = outcome.sent.iter().map(|(to, _)| to.as_str()).collect();
        assert_eq!(told, ["alpha", "beta"]);
    }

    #[test]
    fn a_party_never_concedes_past_its_limit() {
        let outcome = TestRun::new(json!({
            "role": "party", "peer": "alpha", "start": 40, "limit": 30, "rounds": 5
        }))
        .node("beta")
        .peer("alpha", peer(vec![10.0, 15.0, 20.0, 20.0, 20.0]))
        .run::<Negotiator>();
        assert!(outcome.result.is_err(), "no mediator decided");
        let mine: Vec<f64> = outcome
            .sent
            .iter()
            .map(|(_, b)| b["value"].as_f64().unwrap_or(-1.0))
            .collect();
        assert_eq!(mine, [40.0, 35.0, 30.0, 30.0, 30.0]);
    }

    #[test]
    fn a_silent_peer_is_a_clear_failure() {
        let outcome = TestRun::new(json!({
            "role": "party", "peer": "beta", "start": 1, "limit": 2
        }))
        .peer("beta", |_| Vec::new())
        .run::<Negotiator>();
        let error = outcome.error().to_string();
        assert!(error.contains("beta's proposal of round 1"), "{error}");
    }

    #[test]
    fn ping_waits_for_each_echo_and_pong_echoes_until_told_to_stop() {
        let outcome = TestRun::new(json!({ "role": "ping", "peer": "pong", "count": 3 }))
            .peer("pong", |body| {
                if body == json!("stop") {
                    vec![]
                } else {
                    vec![body]
                }
            })
            .run::<Negotiator>();
        assert_eq!(outcome.output::<Value>()["round_trips"], 3);
        assert_eq!(outcome.sent.len(), 4, "three and the stop");
        let outcome = TestRun::new(json!({ "role": "pong" }))
            .message("ping", 1)
            .message("ping", 2)
            .message("ping", "stop")
            .peer("ping", |_| Vec::new())
            .run::<Negotiator>();
        assert_eq!(outcome.output::<Value>()["echoed"], 2);
        assert_eq!(
            outcome.sent,
            [("ping".into(), json!(1)), ("ping".into(), json!(2))]
        );
    }

    #[test]
    fn a_collector_returns_what_it_took_in_order_and_thinks_after_each() {
        let outcome = TestRun::new(json!({ "role": "collect", "count": 2, "think_ms": 5 }))
            .message("alpha", json!({ "n": 1 }))
            .message("beta", "two")
            .sleep_tool()
            .run::<Negotiator>();
        let out: Value = outcome.output();
        assert_eq!(
            out["got"],
            json!([{ "from": "alpha", "body": { "n": 1 } }, { "from": "beta", "body": "two" }])
        );
        let missing = TestRun::new(json!({ "role": "collect", "count": 3, "wait_ms": 1 }))
            .message("alpha", 1)
            .run::<Negotiator>();
        let error = missing.error().to_string();
        assert!(error.contains("message 2 of 3 did not come"), "{error}");
    }

    #[test]
    fn a_probe_reports_what_the_host_refused() {
        let outcome = TestRun::new(json!({ "role": "probe", "to": ["beta", "run-2/beta"] }))
            .peer("beta", |_| Vec::new())
            .run::<Negotiator>();
        let out: Value = outcome.output();
        assert_eq!(out["beta"]["sent"], 1);
        assert!(out["run-2/beta"]["refused"].is_string());
    }
}
