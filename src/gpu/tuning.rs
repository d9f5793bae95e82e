//! The tuning cache: kernel configurations measured by `asna tune`, stored per adapter and
//! driver in one JSON file, so that the same binary picks its fastest tiles on every machine.
//!
//! The file lives at `$ASNA_TUNE_CACHE`, else `$XDG_CACHE_HOME/asna/tune.json`, else
//! `~/.cache/asna/tune.json`. `ASNA_TUNE=off` ignores it. A missing file means defaults; an
//! unreadable one is reported once on stderr and ignored (it is a cache, never an input).
//! What the entries mean, and how they are used, is `kernels.rs`.

use super::kernels::TileConfig;
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

/// The winner for one kernel shape, with the times that made it win.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedKernel {
    /// Family and tile, stored flat: `kernel`, `tm`, `tn`, `threads_n`, `wg`.
    #[serde(flatten)]
    pub config: TileConfig,
    /// Images in the measured batch.
    pub images: u32,
    pub tuned_us: f64,
    pub default_us: f64,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    adapters: BTreeMap<String, BTreeMap<String, TunedKernel>>,
}

/// How a recorded shape was used: the most images it was dispatched for, and how often.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub images: usize,
    pub calls: usize,
}

/// Where the cache lives (see the module comment); None when no home directory is known.
pub fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ASNA_TUNE_CACHE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("asna").join("tune.json"))
}

/// Identifies an adapter and its driver: a new driver version is tuned afresh.
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} | {:?} | {} {} | {:04x}:{:04x}",
        info.name, info.backend, info.driver, info.driver_info, info.vendor, info.device
    )
}

fn read(path: &Path) -> Result<CacheFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile::default()),
        Err(e) => return Err(anyhow!("{}: {e}", path.display())),
    };
    let file: CacheFile = serde_json::from_str(&text)
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
pub fn load(path: &Path, adapter: &str) -> Result<BTreeMap<String, TunedKernel>> {
    Ok(read(path)?.adapters.remove(adapter).unwrap_or_default())
}

/// Replaces this adapter's entries in the cache at `path`, keeping other adapters' entries;
/// the file is replaced atomically.
pub fn save(path: &Path, adapter: &str, table: &BTreeMap<String, TunedKernel>) -> Result<()> {
    // An unreadable old cache is replaced rather than blocking a new tuning run.
    let mut file = read(path).unwrap_or_default();
    file.version = VERSION;
    file.adapters.insert(adapter.to_string(), table.clone());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&file)?;
    crate::files::write_atomic(path, text.as_bytes())
}
