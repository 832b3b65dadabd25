//! `misfit`: claims the `wasm-orch:agent/agent` interface, but its `run` takes a plain string
//! and returns one. Everything else about it is fine, so only a check of the export's types
//! can tell (`wasm-orch validate` must, before any task runs).

wit_bindgen::generate!({
    inline: r"
        package wasm-orch:agent@0.2.0;

        interface agent {
            record info {
                name: string,
                version: string,
                description: string,
                capabilities: list<string>,
            }
            describe: func() -> info;
            run: func(input: string) -> string;
        }

        world misfit {
            export agent;
        }
    ",
});

struct Misfit;

impl exports::wasm_orch::agent::agent::Guest for Misfit {
    fn describe() -> exports::wasm_orch::agent::agent::Info {
        exports::wasm_orch::agent::agent::Info {
            name: "misfit".into(),
            version: "0.1.0".into(),
            description: "the wrong run".into(),
            capabilities: Vec::new(),
        }
    }

    fn run(input: String) -> String {
        input
    }
}

export!(Misfit);
