import { host, componentError } from "./host.mjs";
export function invoke(name, input) {
  const h = host();
  const value = JSON.parse(input);
  h.toolCalls.push([name, value]);
  const tool = h.tools.get(name);
  if (!tool) throw componentError("denied", `tool \`${name}\` is not granted (give it with TestRun.tool)`);
  return JSON.stringify(tool(value));
}
