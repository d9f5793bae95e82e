//! wgpu's pipeline cache kept on disk per adapter and driver: written by a run, read by the
//! next, and a corrupt or cut file ignored with a one-line warning (and rebuilt), never
//! trusted: the score stays the same throughout.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `asna score` of the demo pair with the cache directory `cache_home` (`XDG_CACHE_HOME`).
fn score(cache_home: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asna"))
        .args(["score", "data/demo/ref.png", "data/demo/dist.png"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_CACHE_HOME", cache_home)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr,
    )
}

/// A cache directory of its own for asna, whose `mesa_shader_cache` is Mesa's usual one, so
/// that the driver does not compile every kernel afresh.
fn cache_home(name: &str) -> PathBuf {
    let home = std::env::temp_dir().join(format!("asna-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let mesa = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("mesa_shader_cache"));
    if let Some(mesa) = mesa {
        let _ = std::fs::create_dir_all(&mesa);
        std::os::unix::fs::symlink(&mesa, home.join("mesa_shader_cache")).unwrap();
    }
    home
}

fn cache_files(cache_home: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache_home.join("asna/pipelines"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn the_pipeline_cache_is_kept_and_a_bad_one_ignored() {
    let home = cache_home("pipeline-cache");
    let gpu = asna::gpu::Gpu::default_adapter().unwrap();
    let (first, stderr) = score(&home);
    let files = cache_files(&home);
    if !gpu.features.contains(wgpu::Features::PIPELINE_CACHE) {
        // Without the feature there is nothing to keep, and nothing is written.
        assert!(gpu.pipeline_cache_file().is_none());
        assert!(files.is_empty(), "{files:?}");
        return;
    }
    assert!(!stderr.contains("pipeline cache"), "{stderr}");
    assert_eq!(files.len(), 1, "one file for this adapter: {files:?}");
    let file = &files[0];
    let bytes = std::fs::read(file).unwrap();
    assert!(!bytes.is_empty());

    let (again, stderr) = score(&home);
    assert_eq!(again, first);
    assert!(
        !stderr.contains("pipeline cache"),
        "a valid cache is read quietly: {stderr}"
    );

    // Bytes changed in the middle (the hash no longer matches), then the file cut short.
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x5a;
    for bad in [
        corrupt,
        bytes[..bytes.len() / 2].to_vec(),
        b"not a cache".to_vec(),
    ] {
        std::fs::write(file, &bad).unwrap();
        let (score_now, stderr) = score(&home);
        assert_eq!(score_now, first);
        let line = stderr
            .lines()
            .find(|l| l.contains("pipeline cache"))
            .unwrap_or_else(|| panic!("no warning: {stderr}"));
        assert!(
            line.starts_with("warning: pipeline cache ") && line.contains("ignored"),
            "{line}"
        );
        // Rebuilt: the next run reads it quietly.
        let (score_next, stderr) = score(&home);
        assert_eq!(score_next, first);
        assert!(!stderr.contains("pipeline cache"), "not rebuilt: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
