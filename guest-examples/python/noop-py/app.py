"""noop-py: does nothing, so what a run of it costs is the host's own per-task overhead for a
Python guest (the interpreter's start included). The Python twin of the Rust `noop`."""

import wasm_orch


class Noop(wasm_orch.Agent):
    name = "noop-py"
    description = "Does nothing (Python): the per-task overhead of a Python guest"

    def run(self, cx):
        return None


Agent = wasm_orch.export(Noop)
