//! wgpu's pipeline cache kept on disk, one file per adapter and driver, where the adapter
//! offers it (`Features::PIPELINE_CACHE`, Vulkan): a driver without a disk cache of its own
//! then compiles the model's kernels once per machine, not once per run.
//!
//! The file lives in `pipelines/` beside the tuning cache (`$XDG_CACHE_HOME/asna`, else
//! `~/.cache/asna`; see tuning.rs), is read as a bounded regular file, and is handed to wgpu,
//! which checks its header (wgpu's version, the backend, the adapter and driver, the data's
//! length and hash) before the driver sees a byte of it. A file that fails those checks, or
//! cannot be read, is reported once on stderr and replaced; it is a cache, never an input.

use std::path::{Path, PathBuf};

/// The largest cache file read or written.
pub const MAX_BYTES: u64 = 256 << 20;

/// An open pipeline cache and the file it came from and goes back to.
pub struct DiskPipelineCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Length of the data read at start (0: none), to skip rewriting an unchanged cache.
    loaded: usize,
}

/// This adapter's cache file (None without a cache directory).
pub fn path_for(info: &wgpu::AdapterInfo) -> Option<PathBuf> {
    let dir = super::tuning::cache_dir()?;
    let key = super::tuning::adapter_key(info);
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = crate::files::digest(key.as_bytes());
    let short: String = name.chars().take(80).collect();
    Some(
        dir.join("pipelines")
            .join(format!("{short}-{digest:016x}.bin")),
    )
}

impl DiskPipelineCache {
    /// Opens the cache for a device that has `Features::PIPELINE_CACHE`, from `path`.
    pub fn open(device: &wgpu::Device, path: &Path) -> DiskPipelineCache {
        let data = match std::fs::symlink_metadata(path) {
            Err(_) => None,
            Ok(_) => match crate::files::read_bounded(path, MAX_BYTES, "a pipeline cache") {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    eprintln!("warning: pipeline cache ignored: {}", crate::one_line(&e));
                    None
                }
            },
        };
        let make = |data: Option<&[u8]>, fallback: bool| {
            // SAFETY: wgpu validates the data's header (its version, backend, adapter and
            // driver, length and hash) before the driver reads it; with `fallback: false` a
            // mismatch is an error, reported below, and never reaches the driver.
            unsafe {
                device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some("asna pipeline cache"),
                    data,
                    fallback,
                })
            }
        };
        if let Some(bytes) = &data {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let cache = make(Some(bytes), false);
            match pollster::block_on(scope.pop()) {
                None => {
                    return DiskPipelineCache {
                        cache,
                        path: path.to_path_buf(),
                        loaded: bytes.len(),
                    }
                }
                Some(e) => eprintln!(
                    "warning: pipeline cache {} ignored (it will be rebuilt): {}",
                    path.display(),
                    // The innermost cause, e.g. "The pipeline cache data was truncated".
                    e.to_string()
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .last()
                        .unwrap_or("invalid")
                        .to_string()
                ),
            }
        }
        DiskPipelineCache {
            cache: make(None, true),
            path: path.to_path_buf(),
            loaded: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the cache back (atomically) when it holds more than it was read with.
    pub fn save(&self) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        if data.len() <= self.loaded || data.len() as u64 > MAX_BYTES {
            return;
        }
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(anyhow::Error::from)
            .and_then(|_| crate::files::write_atomic(&self.path, &data));
        if let Err(e) = written {
            eprintln!(
                "warning: pipeline cache {} not saved: {}",
                self.path.display(),
                crate::one_line(&e)
            );
        }
    }
}
