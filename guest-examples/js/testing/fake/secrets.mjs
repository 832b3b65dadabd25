import { host, componentError } from "./host.mjs";
export function get(name) {
  const h = host();
  h.secretsRead.push(name);
  if (!h.secrets.has(name)) throw componentError("denied", `secret \`${name}\` is not granted`);
  return h.secrets.get(name);
}
