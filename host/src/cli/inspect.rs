//! `wasm-orch inspect`: a component's WIT world, and whether it implements `sub-agent`.

use super::{INVALID, InspectArgs, SUCCESS, report_error};
use crate::events::inert;

/// The contract this release's SDK and templates build.
const CURRENT: &str = "wasm-orch:agent@0.3.0";

pub(super) async fn inspect(args: InspectArgs) -> u8 {
    let runtime = match args.runtime.build() {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    let info = match runtime.inspect(&args.component).await {
        Ok(info) => info,
        Err(e) => return report_error(&e),
    };
    println!("component: {}", info.path.display());
    println!("size:      {} bytes", info.size);
    if !info.digest.is_empty() {
        println!("sha256:    {}", info.digest);
    }
    match &info.sub_agent {
        Ok(agent) => {
            match &info.contract {
                Some(version) => {
                    println!(
                        "sub-agent: yes, implements wasm-orch:agent/sub-agent (contract {})",
                        inert(version)
                    );
                    if version.as_str() != CURRENT {
                        println!(
                            "  (an older contract, still run as it is; this release's SDK and \
                             `wasm-orch new` build {CURRENT})"
                        );
                    }
                }
                None => println!("sub-agent: yes, implements wasm-orch:agent/sub-agent"),
            }
            // What a component says of itself is its author's text: shown, never obeyed.
            println!(
                "  name:         {} {}",
                inert(&agent.name),
                inert(&agent.version)
            );
            if !agent.description.is_empty() {
                println!("  description:  {}", inert(&agent.description));
            }
            if !agent.capabilities.is_empty() {
                println!("  capabilities: {}", inert(&agent.capabilities.join(", ")));
            }
        }
        Err(why) => println!("sub-agent: no: {}", inert(why)),
    }
    println!();
    for line in info.wit.trim_end().lines() {
        println!("{}", inert(line));
    }
    if info.sub_agent.is_ok() {
        SUCCESS
    } else {
        INVALID
    }
}
