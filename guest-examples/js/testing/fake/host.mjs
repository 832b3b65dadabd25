// The fake host of the running TestRun, shared by the fake interface modules.
export function host() {
  const h = globalThis.__wasmOrchTestHost;
  if (!h) throw new Error("host calls work only inside TestRun.run (wasm-orch-testing.mjs)");
  return h;
}

// How jco's bindings report an `err` of a WIT result: an exception carrying the variant.
export function componentError(tag, val) {
  const e = new Error(`${tag}: ${val}`);
  e.payload = { tag, val };
  return e;
}
