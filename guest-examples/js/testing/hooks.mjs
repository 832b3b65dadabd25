// Module resolution hooks (node:module register): the WIT imports of an agent,
// `wasm-orch:agent/<interface>@<version>`, resolve to the fake host's modules in ./fake/.
export async function resolve(specifier, context, next) {
  const m = /^wasm-orch:agent\/([a-z-]+)(@[0-9.]+)?$/.exec(specifier);
  if (m) return { url: new URL(`./fake/${m[1]}.mjs`, import.meta.url).href, shortCircuit: true };
  return next(specifier, context);
}
