// add-js: the `add` agent in JavaScript. The sum of its parameters `a` and `b` and of every
// upstream output; with `delay_ms`, it first waits that long in the host's `sleep` tool.
import { progress } from "wasm-orch:agent/status@0.3.0";
import { invoke } from "wasm-orch:agent/tools@0.3.0";

// Fails the task with one of the WIT `agent-error` kinds.
const fail = (tag, message) => { throw { tag, val: message }; };

export const agent = {
  describe() {
    return {
      name: "add-js",
      version: "0.1.0",
      description: "Adds numbers: its parameters a and b, and every upstream output (JavaScript)",
      capabilities: ["math.add"],
    };
  },

  run(input) {
    let params;
    try { params = JSON.parse(input.params); } catch (e) { fail("invalid-input", `parameters are not JSON: ${e}`); }
    const { a = 0, b = 0, delay_ms } = params ?? {};
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) fail("invalid-input", "`a` and `b` must be integers");
    if (delay_ms) {
      progress(0, "thinking");
      try { invoke("sleep", JSON.stringify({ ms: delay_ms })); } catch (e) { fail("failed", `sleep: ${JSON.stringify(e.payload ?? e)}`); }
    }
    let sum = BigInt(a) + BigInt(b);
    for (const up of input.upstream) {
      if (up.outcome.tag !== "output") fail("invalid-input", `upstream task \`${up.node}\` ended ${up.outcome.val.status}`);
      const v = JSON.parse(up.outcome.val);
      if (!Number.isSafeInteger(v)) fail("invalid-input", `output of \`${up.node}\` is not an integer`);
      sum += BigInt(v);
    }
    if (sum > 9223372036854775807n || sum < -9223372036854775808n) fail("invalid-input", "the sum overflows a 64-bit integer");
    progress(1, `sum = ${sum}`);
    return sum.toString();
  },
};
