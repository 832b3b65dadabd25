//! `wasm-orch serve` and `wasm-orch token new`.

use std::io::Write;

use super::{INVALID, SUCCESS, ServeArgs, TokenAction, TokenArgs, report_error};
use crate::policy::{Policy, new_token, token_sha256};
use crate::serve::{ServeOptions, serve};

pub(super) async fn run(args: ServeArgs) -> u8 {
    #[cfg(feature = "nats")]
    let runtime =
        match super::worker::runtime(&args.runtime, args.nats.as_deref(), &args.pool).await {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
    #[cfg(not(feature = "nats"))]
    let runtime = match args.runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => return report_error(&e),
    };
    let grace = match humantime::parse_duration(&args.grace) {
        Ok(grace) => grace,
        Err(e) => {
            eprintln!(
                "error: --grace `{}` is not a duration ({e}); e.g. 30s",
                args.grace
            );
            return INVALID;
        }
    };
    let mut options = ServeOptions::new(args.listen);
    options.workflows_dir = args.workflows_dir;
    options.components_dir = args.components_dir;
    options.grace = grace;
    options.max_body = args.max_body;
    #[cfg(feature = "nats")]
    if let Some(url) = &args.nats {
        match crate::statebus::StateBus::connect(url).await {
            Ok(bus) => options.statebus = Some(bus),
            Err(e) => {
                eprintln!("error: --nats: {e}");
                return INVALID;
            }
        }
    }
    let served = serve(runtime, options, |addr| {
        // The first line of stdout, for scripts and tests that listen on port 0.
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })
    .await;
    match served {
        Ok(()) => SUCCESS,
        Err(e) => report_error(&e),
    }
}

pub(super) fn token(args: TokenArgs) -> u8 {
    match args.action {
        TokenAction::New {
            tenant,
            worker: _,
            pool,
            policy,
            name,
        } => new(
            tenant.as_deref(),
            pool.as_deref(),
            policy.as_deref(),
            name.as_deref(),
        ),
    }
}

/// A new token: a tenant's (`tenant`), or else a worker's (of `pool` only, if named).
fn new(
    tenant: Option<&str>,
    pool: Option<&str>,
    policy: Option<&std::path::Path>,
    name: Option<&str>,
) -> u8 {
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let bearer = match (tenant, pool) {
        (Some(tenant), _) if !crate::config::is_valid_name(tenant) => {
            eprintln!(
                "error: `{tenant}` is not a tenant name: use letters, digits, `_`, `-` and `.`"
            );
            return INVALID;
        }
        (Some(tenant), _) => format!("tenant = {}\n", quoted(tenant)),
        (None, Some(pool)) if !crate::config::is_valid_name(pool) => {
            eprintln!("error: `{pool}` is not a pool name: use letters, digits, `-` and `_`");
            return INVALID;
        }
        (None, Some(pool)) => format!("worker = true\npool = {}\n", quoted(pool)),
        (None, None) => "worker = true\n".to_owned(),
    };
    let token = match new_token() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("error: no randomness for a token: {e}");
            return INVALID;
        }
    };
    let mut entry = format!(
        "\n[[tokens]]\n{bearer}sha256 = \"{}\"\n",
        token_sha256(&token)
    );
    if let Some(name) = name {
        entry.push_str(&format!("name = {}\n", quoted(name)));
    }
    let Some(path) = policy else {
        println!("{token}");
        eprintln!("add these lines to the policy file (it keeps only the token's hash):{entry}");
        return SUCCESS;
    };
    let before = match crate::config::read_text(path, crate::config::MAX_CONFIG_BYTES) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", path.display());
            return INVALID;
        }
    };
    if let Err(e) = Policy::parse(&before, path) {
        eprintln!("error: the policy is not valid as it is; fix it first:\n{e}");
        return INVALID;
    }
    let mut after = before.clone();
    if !after.is_empty() && !after.ends_with('\n') {
        after.push('\n');
    }
    after.push_str(&entry);
    if let Err(e) = Policy::parse(&after, path) {
        eprintln!("error: the policy would not be valid with the token (nothing changed):\n{e}");
        return INVALID;
    }
    // Written whole to a temporary file beside it, then renamed over it: a crash leaves the
    // old file or the new one, never half of one.
    let tmp = path.with_extension("toml.tmp");
    let written = std::fs::write(&tmp, &after).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("error: cannot write `{}`: {e}", path.display());
        return INVALID;
    }
    println!("{token}");
    let whose = match (tenant, pool) {
        (Some(tenant), _) => format!("tenant `{tenant}`"),
        (None, Some(pool)) => format!("a worker of pool `{pool}`"),
        (None, None) => "a worker".to_owned(),
    };
    eprintln!(
        "added the token's SHA-256 to `{}` for {whose}; the token itself is shown only now. \
         Restart `wasm-orch serve` to take it in.",
        path.display()
    );
    SUCCESS
}
