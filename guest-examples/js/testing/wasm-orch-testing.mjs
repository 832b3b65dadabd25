// Test a JavaScript sub-agent in plain Node.js, without a host or a build: its WIT imports
// resolve to a fake host (module hooks), and `TestRun` calls its `agent.run` as the host would.
//
//   import { TestRun } from "../testing/wasm-orch-testing.mjs";
//   const outcome = await new TestRun({ a: 1, b: 2 }).upstream("left", 10).run("./agent.js", import.meta.url);
//   assert.equal(outcome.output, 13);
//
// Tools and secrets the test does not give are denied, as ungranted ones are.
import { register } from "node:module";

register(new URL("./hooks.mjs", import.meta.url));

export class TestRun {
  constructor(params, { node = "task", attempt = 1, tenant = "default" } = {}) {
    this.params = JSON.stringify(params);
    this.task = { runId: "test-run", node, branch: `test.${node}`, attempt, tenant };
    this.ups = [];
    this.host = {
      branch: `test.${node}`, board: new Map(), tools: new Map(), secrets: new Map(),
      progress: [], partials: [], logs: [], toolCalls: [], secretsRead: [],
    };
  }
  upstream(node, output) { this.ups.push({ node, outcome: { tag: "output", val: JSON.stringify(output) } }); return this; }
  upstreamFailed(node, status, kind, message) { this.ups.push({ node, outcome: { tag: "failed", val: { status, kind, message } } }); return this; }
  blackboard(key, value) { this.host.board.set(key, { value: JSON.stringify(value), version: 1 }); return this; }
  tool(name, answer) { this.host.tools.set(name, answer); return this; }
  sleepTool() { return this.tool("sleep", () => ({})); }
  secret(name, value) { this.host.secrets.set(name, value); return this; }

  // Runs the agent module at `path` (relative to `base`, e.g. import.meta.url).
  async run(path, base) {
    const { agent } = await import(new URL(path, base).href);
    globalThis.__wasmOrchTestHost = this.host;
    const h = this.host;
    const done = (output, error) => ({
      output, error, progress: h.progress, partials: h.partials, logs: h.logs,
      toolCalls: h.toolCalls, secretsRead: h.secretsRead,
      blackboard: Object.fromEntries([...h.board].map(([k, v]) => [k, JSON.parse(v.value)])),
    });
    try {
      const json = agent.run({ task: this.task, params: this.params, upstream: this.ups });
      if (typeof json !== "string") throw new Error("run must return JSON text");
      return done(JSON.parse(json), null);
    } catch (e) {
      if (e && typeof e === "object" && ["invalid-input", "failed", "unavailable"].includes(e.tag)) {
        return done(null, { kind: e.tag, message: e.val });
      }
      return done(null, { kind: "failed", message: String(e?.message ?? e) });
    } finally {
      delete globalThis.__wasmOrchTestHost;
    }
  }
}
