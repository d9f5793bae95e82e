//! asna: the ASNA full-reference image quality model (Ayyoubzadeh & Royat, NTIRE 2021) scored,
//! trained and evaluated in WGSL compute shaders on any GPU that wgpu reaches.
//!
//! To score, start at [`Model`]:
//!
//! ```
//! let model = asna::Model::new()?; // the embedded default model
//! println!("{:.4}", model.score_files("data/demo/ref.png", "data/demo/dist.png")?);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Layers, bottom up, beneath `api` (the front door): `gpu` (context, buffers, pipelines, profiler), `ops` (kernel launches,
//! forward and backward), `autograd` (the tape), `model` (ASNA and its sorter), the pieces
//! commands share (`optim`: Adam and the training steps; `scorer`: batched scoring; `metrics`;
//! `run_dir`: a training run's files; `plan`: a scoring pass recorded as data for other
//! runtimes), then one module per command, which imports none of the others (`web` writes the
//! browser page that replays plans).

pub mod api;
pub mod autograd;
pub mod bench;
pub mod data;
pub mod devices;
pub mod eval;
pub mod files;
pub mod gpu;
pub mod import;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
pub mod options;
pub mod plan;
pub mod plot;
pub mod plot_run;
pub mod progress;
pub mod rng;
pub mod run_dir;
pub mod score;
pub mod scorer;
pub mod synth;
pub mod train;
pub mod train_sorter;
pub mod tune;
pub mod web;

pub use api::{Model, ModelBuilder, Precision, QualityMap};

/// An error as one line, the way the command line prints it: its chain of causes joined by
/// ": ", each cause once, control characters blanked.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string().replace(|ch: char| ch.is_control(), " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
