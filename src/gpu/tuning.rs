//! The tuning cache: kernel configurations measured by `asna tune`, stored per adapter and
//! driver in one JSON file, so that the same binary picks its fastest tiles on every machine.
//!
//! The file lives at `$ASNA_TUNE_CACHE`, else `$XDG_CACHE_HOME/asna/tune.json`, else
//! `~/.cache/asna/tune.json`. `ASNA_TUNE=off` ignores it. A missing file means defaults; an
//! unreadable one is reported once on stderr and ignored (it is a cache, never an input).
//! The entries are whatever the layer above stores (src/ops/conv/policy.rs `TunedKernel`: a
//! family and tile with its times), read and written here by shape key.

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile<E> {
    version: u32,
    adapters: BTreeMap<String, BTreeMap<String, E>>,
}

impl<E> Default for CacheFile<E> {
    fn default() -> Self {
        CacheFile {
            version: 0,
            adapters: BTreeMap::new(),
        }
    }
}

/// Where the cache lives (see the module comment); None when no home directory is known.
pub fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ASNA_TUNE_CACHE") {
        return Some(PathBuf::from(p));
    }
    Some(cache_dir()?.join("tune.json"))
}

/// asna's cache directory: `$XDG_CACHE_HOME/asna`, else `~/.cache/asna`.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("asna"))
}

/// Identifies an adapter and its driver: a new driver version is tuned afresh.
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} | {:?} | {} {} | {:04x}:{:04x}",
        info.name, info.backend, info.driver, info.driver_info, info.vendor, info.device
    )
}

/// The largest tuning cache read (a few kilobytes per adapter).
const MAX_CACHE_BYTES: u64 = 16 << 20;

fn read<E: DeserializeOwned>(path: &Path) -> Result<CacheFile<E>> {
    if !path.exists() && path.symlink_metadata().is_err() {
        return Ok(CacheFile::default());
    }
    // A regular file of bounded size, like every other file asna reads whole.
    let bytes = crate::files::read_bounded(path, MAX_CACHE_BYTES, "a tuning cache")?;
    let file: CacheFile<E> = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("{}: not a tuning cache ({e})", path.display()))?;
    if file.version != VERSION {
        return Err(anyhow!(
            "{}: tuning cache version {} (this program writes {VERSION}); run `asna tune` again",
            path.display(),
            file.version
        ));
    }
    Ok(file)
}

/// This adapter's entries in the cache at `path` (empty when the file does not exist).
pub fn load<E: DeserializeOwned>(path: &Path, adapter: &str) -> Result<BTreeMap<String, E>> {
    Ok(read(path)?.adapters.remove(adapter).unwrap_or_default())
}

/// Replaces this adapter's entries in the cache at `path`, keeping other adapters' entries;
/// the file is replaced atomically.
pub fn save<E: Serialize + DeserializeOwned + Clone>(
    path: &Path,
    adapter: &str,
    table: &BTreeMap<String, E>,
) -> Result<()> {
    // An unreadable old cache is replaced rather than blocking a new tuning run.
    let mut file = read::<E>(path).unwrap_or_default();
    file.version = VERSION;
    file.adapters.insert(adapter.to_string(), table.clone());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&file)?;
    crate::files::write_atomic(path, text.as_bytes())
}
