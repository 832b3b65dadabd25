//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (`tests/browser`, installed by `.ci/run` with `npm ci`) against a real
//! server. It starts calc from the page, sees the cards succeed and the output 21, cancels a
//! long run from the page, and sees a planner's DAG grow to 21. The screenshot is saved to
//! `target/dashboard.png`.

use std::process::Command;

use wasm_orch_tests::server::Server;
use wasm_orch_tests::{Scratch, root};

const BIN: &str = env!("CARGO_BIN_EXE_wasm-orch-cli");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_calc_and_cancels_a_long_run_in_chromium() {
    let browser = root().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (.ci/run does)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is missing: `apt-get install chromium` (.ci/run does)"
    );
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    let calc = std::fs::read_to_string(root().join("examples/calc.toml"))
        .expect("examples/calc.toml")
        .replace("../target/guests", "{guests}");
    let (status, body) = server.put_dag("acme", "calc", &calc).await;
    assert_eq!(status, 201, "{body}");
    let slow = r#"
[workflow]
name = "slow"
[agents.add]
component = "{guests}/add.wasm"
timeout = "120s"
tools = ["sleep"]
[[tasks]]
id = "wait"
agent = "add"
with = { a = 1, delay_ms = 100000 }
"#;
    let (status, body) = server.put_dag("acme", "slow", slow).await;
    assert_eq!(status, 201, "{body}");
    let planner = std::fs::read_to_string(root().join("examples/planner.toml"))
        .expect("examples/planner.toml")
        .replace("../target/guests", "{guests}");
    let (status, body) = server.put_dag("acme", "planner", &planner).await;
    assert_eq!(status, 201, "{body}");
    let negotiation = std::fs::read_to_string(root().join("examples/negotiation.toml"))
        .expect("examples/negotiation.toml")
        .replace("../target/guests", "{guests}");
    let (status, body) = server.put_dag("acme", "negotiation", &negotiation).await;
    assert_eq!(status, 201, "{body}");
    let shot = root().join("target/dashboard.png");
    let out = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .arg(&server.url)
        .arg(server.token("acme"))
        .arg(&shot)
        .current_dir(&browser)
        .output()
        .expect("run node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{said}\nserver log:\n{}",
        server.log(1)
    );
    assert!(shot.is_file(), "{said}");
    // What the page did, the API confirms: one calc succeeded with 21, one slow run cancelled.
    let (_, runs) = server.get("acme", "/v1/runs").await;
    let states: Vec<(String, String)> = runs["runs"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| {
                    (
                        r["workflow"].as_str().unwrap_or("").to_owned(),
                        r["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        states.contains(&("calc".into(), "succeeded".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("slow".into(), "cancelled".into())),
        "{states:?}"
    );
}
