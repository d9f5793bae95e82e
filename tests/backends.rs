//! Every backend this machine offers gives the same scores: the demo pair is scored through
//! each of them (Vulkan, Metal, DX12, OpenGL ES) by the command line, with `WGPU_BACKEND`
//! selecting it, and the scores agree within 1e-4 in the model's standardised units.
//!
//! `ASNA_EXPECT_BACKENDS` (comma-separated, e.g. `vulkan,gl`) names backends that must be
//! present, so that a machine meant to test them (CI) cannot pass with one missing.

use std::process::Command;

fn asna(args: &[&str], backend: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asna"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    match backend {
        Some(b) => cmd.env("WGPU_BACKEND", b),
        None => cmd.env_remove("WGPU_BACKEND"),
    };
    cmd.output().unwrap()
}

/// The backends of the adapters `asna devices --json` lists, in wgpu's names, deduplicated.
fn backends() -> Vec<String> {
    let out = asna(&["devices", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = Vec::new();
    for r in rows.as_array().unwrap() {
        let name = r["backend"].as_str().unwrap().to_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[test]
fn the_demo_pair_scores_alike_on_every_backend() {
    let found = backends();
    if let Ok(expected) = std::env::var("ASNA_EXPECT_BACKENDS") {
        for b in expected.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            assert!(
                found.iter().any(|f| f == b),
                "no {b} adapter; found {found:?}"
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("asna-backends-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut scores = Vec::new();
    for backend in &found {
        let out_file = dir.join(format!("{backend}.json"));
        let out = asna(
            &[
                "score",
                "data/demo/ref.png",
                "data/demo/dist.png",
                "--format",
                "json",
                "--out",
                out_file.to_str().unwrap(),
            ],
            Some(backend),
        );
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
        let score = rows[0]["score"].as_f64().unwrap();
        eprintln!("{backend}: {score}");
        scores.push((backend.clone(), score));
    }
    // The embedded model's label deviation turns a difference into standardised units.
    let model = asna::model::weights::TensorFile::parse(
        asna::model::checkpoint::DEFAULT_MODEL,
        "default model",
    )
    .unwrap();
    let std: f64 = model.metadata["label_std"].parse().unwrap();
    let (first, reference) = &scores[0];
    assert!((reference - 3.7397).abs() < 1e-3, "{first}: {reference}");
    for (backend, score) in &scores[1..] {
        let dz = (score - reference).abs() / std;
        assert!(
            dz <= 1e-4,
            "{backend} scores {score}, {first} {reference}: {dz:.2e} standardised units apart"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
