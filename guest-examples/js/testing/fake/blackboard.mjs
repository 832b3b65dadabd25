// Scoped as the host scopes keys: plain keys are the branch's own, `shared/` keys are written
// only by compare-and-swap, other branches' keys are read-only.
import { host, componentError } from "./host.mjs";
const own = (h, key) => (key.startsWith(`branches/${h.branch}/`) ? key.slice(h.branch.length + 10) : key);
function writable(h, key, cas) {
  key = own(h, key);
  if (key.startsWith("branches/")) throw componentError("denied", "another branch's keys are read-only");
  if (key.startsWith("shared/") && !cas) throw componentError("denied", "shared keys are written with compare-and-swap");
  return key;
}
export function get(key) {
  const h = host();
  const e = h.board.get(own(h, key));
  return e ? { value: e.value, version: BigInt(e.version) } : undefined;
}
export function put(key, value) {
  const h = host();
  key = writable(h, key, false);
  const version = (h.board.get(key)?.version ?? 0) + 1;
  h.board.set(key, { value, version });
  return BigInt(version);
}
export function compareAndSwap(key, expected, value) {
  const h = host();
  key = writable(h, key, true);
  const current = h.board.get(key);
  const have = current ? BigInt(current.version) : undefined;
  if (have !== (expected ?? undefined)) {
    throw componentError("conflict", current ? { value: current.value, version: BigInt(current.version) } : undefined);
  }
  const version = (current?.version ?? 0) + 1;
  h.board.set(key, { value, version });
  return BigInt(version);
}
export function listKeys(prefix) {
  const h = host();
  return [...h.board.keys()].filter((k) => k.startsWith(own(h, prefix))).sort();
}
