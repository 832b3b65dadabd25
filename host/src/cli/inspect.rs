//! `wasm-orch inspect`: a component's WIT world, and whether it implements `sub-agent`.

use super::{INVALID, InspectArgs, SUCCESS, report_error};

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
            println!("sub-agent: yes, implements wasm-orch:agent/sub-agent");
            println!("  name:         {} {}", agent.name, agent.version);
            if !agent.description.is_empty() {
                println!("  description:  {}", agent.description);
            }
            if !agent.capabilities.is_empty() {
                println!("  capabilities: {}", agent.capabilities.join(", "));
            }
        }
        Err(why) => println!("sub-agent: no: {why}"),
    }
    println!("\n{}", info.wit.trim_end());
    if info.sub_agent.is_ok() {
        SUCCESS
    } else {
        INVALID
    }
}
