// add-js's tests, in plain Node.js (no host, no build): node --test
import assert from "node:assert/strict";
import { test } from "node:test";
import { TestRun } from "../testing/wasm-orch-testing.mjs";

test("adds its parameters and every upstream output", async () => {
  const o = await new TestRun({ a: 1, b: 2 }).upstream("left", 10).upstream("right", 100).run("./agent.js", import.meta.url);
  assert.equal(o.error, null);
  assert.equal(o.output, 113);
  assert.deepEqual(o.progress.at(-1), [1, "sum = 113"]);
});

test("sleeps in the host when asked, and fails without the grant", async () => {
  const o = await new TestRun({ a: 3, delay_ms: 400 }).sleepTool().run("./agent.js", import.meta.url);
  assert.equal(o.output, 3);
  assert.deepEqual(o.toolCalls, [["sleep", { ms: 400 }]]);
  const denied = await new TestRun({ delay_ms: 1 }).run("./agent.js", import.meta.url);
  assert.equal(denied.error.kind, "failed");
});

test("bad input and overflow are invalid-input", async () => {
  assert.equal((await new TestRun({ a: "one" }).run("./agent.js", import.meta.url)).error.kind, "invalid-input");
  const big = await new TestRun({ a: Number.MAX_SAFE_INTEGER }).upstream("u", Number.MAX_SAFE_INTEGER).run("./agent.js", import.meta.url);
  assert.equal(big.error, null, "64-bit sums beyond 2^53 are exact (BigInt)");
  assert.equal(big.output, 2 * Number.MAX_SAFE_INTEGER);
  const failed = await new TestRun({}).upstreamFailed("left", "trapped", "trap", "boom").run("./agent.js", import.meta.url);
  assert.equal(failed.error.kind, "invalid-input");
});
