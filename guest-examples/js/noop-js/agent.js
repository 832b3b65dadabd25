// noop-js: does nothing, so what a run of it costs is the host's own per-task overhead for a
// JavaScript guest (the engine's start included). The JavaScript twin of the Rust `noop`.

export const agent = {
  describe() {
    return {
      name: "noop-js",
      version: "0.1.0",
      description: "Does nothing (JavaScript): the per-task overhead of a JavaScript guest",
      capabilities: [],
    };
  },

  run(_input) {
    return "null";
  },
};
