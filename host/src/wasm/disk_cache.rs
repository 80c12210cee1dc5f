//! The persistent compile cache: components compiled once are kept on disk
//! (`SLUICE_CACHE_DIR`), so a restart with unchanged plugins loads them in
//! milliseconds instead of compiling them again.
//!
//! A file is named by the SHA-256 of the component's bytes and by wasmtime's
//! compatibility hash of the engine (its version, the target, and every
//! setting that changes the code, fuel counting included). Another wasmtime
//! build or another setting looks up another name, so it compiles afresh;
//! a file that still fails to load (truncated, or written by something
//! else) is compiled again and replaced. Files are written to a temporary
//! name and renamed, so concurrent starts never read half a file.
//!
//! The files are native code that is loaded without checks, like a
//! `.cwasm`: the directory must be writable only by the user Sluice runs as.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The environment variable that turns the cache on and names its
/// directory.
pub const CACHE_DIR_VAR: &str = "SLUICE_CACHE_DIR";

/// A directory of compiled components for one engine.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    /// The engine's compatibility hash, as hex.
    engine: String,
}

/// Feeds `Hash` input to SHA-256, so the engine's hash is stable across
/// processes (std's hashers are not meant to be).
struct Sha(Sha256);

impl Hasher for Sha {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DiskCache {
    /// The cache named by `SLUICE_CACHE_DIR`, if set and not empty.
    pub fn from_env(engine: &Engine) -> Option<Self> {
        let dir = std::env::var_os(CACHE_DIR_VAR).filter(|d| !d.is_empty())?;
        Some(Self::new(PathBuf::from(dir), engine))
    }

    /// A cache in `dir` for `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut sha = Sha(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut sha);
        Self {
            dir,
            engine: hex(&sha.0.finalize()[..8]),
        }
    }

    fn path(&self, bytes: &[u8]) -> PathBuf {
        let content = hex(&Sha256::digest(bytes)[..16]);
        self.dir.join(format!("{content}-{}.cwasm", self.engine))
    }

    /// The compiled `bytes`, if the cache has them for this engine.
    #[allow(unsafe_code)]
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path(bytes);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
        // output. It is: Sluice wrote it (below) into a directory only it
        // may write to (see the module docs), under a name that includes
        // this engine's compatibility hash; wasmtime checks the header too.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "A compile-cache entry does not load; compiling again.");
                None
            }
        }
    }

    /// Keeps `component`, compiled from `bytes`. A failure is logged and
    /// otherwise ignored: the cache only saves time.
    pub fn store(&self, bytes: &[u8], component: &Component) {
        if let Err(e) = self.try_store(bytes, component) {
            tracing::warn!(dir = %self.dir.display(), error = %format!("{e:#}"), "Cannot write to the compile cache; the next start compiles again.");
        }
    }

    fn try_store(&self, bytes: &[u8], component: &Component) -> anyhow::Result<()> {
        let serialized = component
            .serialize()
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(bytes);
        let tmp = temp_name(&path);
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(())
    }
}

/// A name no other writer uses: this process, and a counter within it.
fn temp_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}-{n}", std::process::id()));
    PathBuf::from(name)
}
