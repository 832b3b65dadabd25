//! `wasm-orch graph`: the task graph as Graphviz `dot` or Mermaid.

use super::{Format, GraphArgs, SUCCESS, report_error};
use crate::{GraphFormat, Workflow};

pub(super) fn graph(args: GraphArgs) -> u8 {
    let workflow = match Workflow::from_file_with_params(&args.file, &args.params) {
        Ok(w) => w,
        Err(e) => return report_error(&e),
    };
    let format = match args.format {
        Format::Dot => GraphFormat::Dot,
        Format::Mermaid => GraphFormat::Mermaid,
    };
    print!("{}", workflow.render(format));
    SUCCESS
}
