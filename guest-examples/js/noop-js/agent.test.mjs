// noop-js's tests, in plain Node.js (no host, no build): node --test
import assert from "node:assert/strict";
import { test } from "node:test";
import { TestRun } from "../testing/wasm-orch-testing.mjs";

test("does nothing and says nothing", async () => {
  const o = await new TestRun({}).run("./agent.js", import.meta.url);
  assert.equal(o.error, null);
  assert.equal(o.output, null);
  assert.deepEqual(o.progress, []);
  assert.deepEqual(o.toolCalls, []);
});
