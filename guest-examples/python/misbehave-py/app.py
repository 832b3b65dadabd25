"""misbehave-py: a Python agent that misbehaves on purpose, for the host's tests: `mode` is
`loop` (never returns), `memory` (grows a list without bound), `raise` (an unexpected
exception), `flood` (10,000 log lines and partial results), or `ok`."""

import wasm_orch


class Misbehave(wasm_orch.Agent):
    name = "misbehave-py"
    description = "Misbehaves on purpose (Python)"

    def run(self, cx):
        mode = cx.params.get("mode")
        if mode == "loop":
            n = 0
            while True:
                n += 1
        if mode == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if mode == "raise":
            return {}["missing"]
        if mode == "flood":
            for i in range(10_000):
                wasm_orch.log(f"line {i} \x1b[2J\x1b]52;c;bad\x07")
                wasm_orch.partial({"i": i})
            return {"flooded": True}
        return {"ok": True}


Agent = wasm_orch.export(Misbehave)
