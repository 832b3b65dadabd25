//! Components compiled once: cached in memory by content digest for the life of the process,
//! and on disk (`<cache dir>/<engine hash>/<sha256>.cwasm`) so that a second run does not
//! recompile.
//!
//! The disk cache is written atomically (temporary file, then rename). A cache file that
//! cannot be loaded (corrupt, or from another wasmtime) is recompiled and replaced.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};

use super::recycler::WarmPool;
use super::state::TaskState;
use crate::model::digest::sha256_hex;
use crate::model::report::CacheSource;
use crate::wit::{Contract, PACKAGE, SubAgentPre};

/// A component ready to instantiate: compiled, linked and checked against `sub-agent` (of
/// `pre.contract()`, the version of the contract it implements).
pub(crate) struct LoadedAgent {
    pub(crate) digest: String,
    pub(crate) pre: SubAgentPre<TaskState>,
    // Read by the dispatch to workers (feature `nats`).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    /// The file it was first loaded from (`None`: from bytes, e.g. a worker's object store).
    pub(crate) source: Option<PathBuf>,
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    /// The interfaces it imports (`wasm-orch:agent/tools@0.2.0`, `wasi:cli/stdout@0.2.6`, ...).
    pub(crate) imports: Arc<[String]>,
    /// Instances made ahead of the attempts that will take them (see `recycler`).
    pub(crate) warm: WarmPool,
}

/// Why a component could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    Read(std::io::Error),
    /// Not a component, or invalid.
    Compile(String),
    /// Imports something the host does not provide.
    Link(String),
    /// Does not export the `agent` interface.
    NotSubAgent(String),
}

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Arc<LoadedAgent>>>,
}

impl ComponentCache {
    /// `dir`: where compiled components are kept on disk (`None`: memory only).
    pub(crate) fn new(engine: &wasmtime::Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = dir.map(|d| d.join(format!("{:016x}", hasher.finish())));
        Self {
            dir,
            loaded: Mutex::default(),
        }
    }

    /// Loads the component at `path`. Blocking: compiles when not cached.
    pub(crate) fn load(
        &self,
        engine: &wasmtime::Engine,
        linker: &Linker<TaskState>,
        path: &Path,
    ) -> Result<(Arc<LoadedAgent>, CacheSource, Duration), LoadError> {
        let started = Instant::now();
        let bytes = read_component(path)?;
        let (agent, source) = self.load_bytes(engine, linker, &bytes, Some(path))?;
        Ok((agent, source, started.elapsed()))
    }

    /// Loads a component from its bytes (read from `path`, if given). Blocking: compiles when
    /// not cached.
    pub(crate) fn load_bytes(
        &self,
        engine: &wasmtime::Engine,
        linker: &Linker<TaskState>,
        bytes: &[u8],
        path: Option<&Path>,
    ) -> Result<(Arc<LoadedAgent>, CacheSource), LoadError> {
        let digest = sha256_hex(bytes);
        if let Some(agent) = self.lock().get(&digest) {
            return Ok((Arc::clone(agent), CacheSource::Memory));
        }
        let (component, source) = self.compile(engine, bytes, &digest)?;
        let imports: Arc<[String]> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if let Some(refused) = unsupported_contract(
            &imports,
            component
                .component_type()
                .exports(engine)
                .map(|(name, _)| name),
        ) {
            return Err(LoadError::NotSubAgent(refused));
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = SubAgentPre::new(pre).map_err(|e| LoadError::NotSubAgent(format!("{e:#}")))?;
        typecheck(engine, &pre)?;
        let agent = Arc::new(LoadedAgent {
            digest: digest.clone(),
            pre,
            source: path.map(Path::to_path_buf),
            imports,
            warm: WarmPool::default(),
        });
        self.lock().insert(digest, Arc::clone(&agent));
        Ok((agent, source))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LoadedAgent>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn compile(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, CacheSource), LoadError> {
        let cached = self.dir.as_ref().map(|d| d.join(format!("{digest}.cwasm")));
        if let Some(file) = cached.as_ref().filter(|f| f.is_file()) {
            // SAFETY: the file is one this cache wrote with `Component::serialize` for an
            // engine with the same compatibility hash (the directory name), under a name that is
            // the digest of its source. Wasmtime still checks its header and version. The cache
            // directory must be writable only by the user running wasm-orch.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(engine, file) };
            match loaded {
                Ok(component) => return Ok((component, CacheSource::DiskCache)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), "recompiling a cached component that does not load: {e:#}")
                }
            }
        }
        // Binary only: a text file named as a component is not parsed (nor echoed) as WAT.
        let component = Component::from_binary(engine, bytes).map_err(|e| {
            LoadError::Compile(if is_core_module(bytes) {
                "this is a core WebAssembly module, not a component; build it for the \
                 wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
                    .to_owned()
            } else {
                format!("{e:#}")
            })
        })?;
        if let Some(file) = cached
            && let Err(e) = store(&component, &file)
        {
            tracing::warn!(file = %file.display(), "could not cache a compiled component: {e:#}");
        }
        Ok((component, CacheSource::Compiled))
    }
}

fn store(component: &Component, file: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = file
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    // A name unique to this process and call, in the same directory: the rename is atomic,
    // and concurrent writers (other runtimes, other processes) never see a partial file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Checks the types of the component's exports (`run` and `describe`) now, not when a task
/// first calls them: instantiates it once in an idle store and looks them up as typed
/// functions. A component whose start functions fail is not judged here (its attempts report
/// that, each under its own limits).
fn typecheck(engine: &wasmtime::Engine, pre: &SubAgentPre<TaskState>) -> Result<(), LoadError> {
    let mut store = wasmtime::Store::new(engine, TaskState::idle());
    store.limiter(|s| &mut s.limiter);
    if store.set_fuel(100_000_000).is_err() {
        return Ok(());
    }
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Continue(1)));
    let Ok(instance) = super::recycler::block_on(pre.instance_pre().instantiate_async(&mut store))
    else {
        return Ok(());
    };
    pre.typed(&mut store, &instance).map(|_| ()).map_err(|e| {
        LoadError::NotSubAgent(format!(
            "its exports do not have the types of `wasm-orch:agent/sub-agent`: {e:#}"
        ))
    })
}

/// Says exactly what to rebuild when a component speaks a version of the contract this host
/// does not serve (`None`: every `wasm-orch:agent` import and export is of a served version).
fn unsupported_contract<'a>(
    imports: &'a [String],
    exports: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let prefix = format!("{PACKAGE}/");
    let served: Vec<String> = Contract::ALL
        .iter()
        .map(|c| c.version().to_owned())
        .collect();
    let names = imports.iter().map(String::as_str).chain(exports);
    let found = names
        .filter_map(|name| name.strip_prefix(prefix.as_str()))
        .find_map(|rest| {
            let version = rest.split_once('@').map_or("", |(_, v)| v);
            (!served.iter().any(|s| s == version)).then(|| version.to_owned())
        })?;
    let found = if found.is_empty() {
        "an unversioned `wasm-orch:agent`".to_owned()
    } else {
        format!("`{PACKAGE}@{}`", crate::model::text::truncate(&found, 64))
    };
    Some(format!(
        "it implements {found}, which this host does not run; it runs {}. Rebuild it against \
         this release's `wit/` (Rust: the `wasm-orch-sdk` of this release; Python and \
         JavaScript: componentize-py or componentize-js with `-d wit`/`-w wit`)",
        Contract::ALL.map(|c| format!("`{c}`")).join(" and ")
    ))
}

/// The largest component file read.
pub(crate) const MAX_COMPONENT: u64 = 256 << 20;

/// A component file's bytes: a regular file of at most [`MAX_COMPONENT`] bytes that starts
/// like WebAssembly. Nothing of a file that does not is read further, or shown.
pub(crate) fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(LoadError::Read)?;
    if !meta.is_file() {
        return Err(LoadError::Compile(
            "it is not a regular file (a directory, a pipe or a device)".into(),
        ));
    }
    if meta.len() > MAX_COMPONENT {
        return Err(LoadError::Compile(format!(
            "it has {} bytes, more than the {} a component may have",
            meta.len(),
            MAX_COMPONENT
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_COMPONENT).read_to_end(&mut bytes))
        .map_err(LoadError::Read)?;
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::Compile(
            "it is not a WebAssembly binary (it does not start with `\\0asm`)".into(),
        ));
    }
    Ok(bytes)
}

fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm\x01\0\0\0")
}
