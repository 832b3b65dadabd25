"""tally-py: a Python agent that uses what a guest can reach. It takes `items` (a list of
strings), waits `delay_ms` in the host's `sleep` tool, adds each item to the run's shared
tally on the blackboard (`shared/tally`, a compare-and-swap loop: parallel tasks lose no
update), publishes a partial result after each, reports progress, and returns what it
added and the tally it saw last."""

import wasm_orch


class Tally(wasm_orch.Agent):
    name = "tally-py"
    description = "Adds items to the run's shared tally (Python)"
    capabilities = ["tally"]

    def run(self, cx):
        items = cx.params.get("items")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise wasm_orch.InvalidInput("`items` must be a list of strings")
        delay = cx.params.get("delay_ms", 0)
        if delay:
            wasm_orch.progress(0.0, "waiting")
            wasm_orch.tool("sleep", {"ms": int(delay)})
        tally = {}
        for n, item in enumerate(items, 1):
            def add(old):
                new = dict(old or {})
                new[item] = new.get(item, 0) + 1
                return new
            tally, _version = wasm_orch.bb_update("shared/tally", add)
            wasm_orch.partial({"added": item})
            wasm_orch.progress(n / len(items), f"{n}/{len(items)} added")
        wasm_orch.log(f"{cx.node} added {len(items)} items")
        return {"added": len(items), "tally": tally}


Agent = wasm_orch.export(Tally)
