//! `asna train`: the ASNA training loop. Data from a dataset reader, split by reference image,
//! labels standardised on the training set; batches of 16 pairs decoded and augmented on
//! background threads; loss `m*mse + (1-m)*(1-r^2) + s*rank + l2` with the frozen sorter; Adam
//! with a linear warm-up and a step or cosine schedule; validation every epoch, with batch-norm
//! statistics recomputed over fixed training batches ("precise BN"); checkpoints that resume
//! exactly.
//!
//! - `config`: the options, each declared once (help text, default, record in checkpoints),
//!   and the learning-rate schedule;
//! - `run`: a run from its setup through its steps, validations and checkpoints;
//! - `precise_bn`: the batch-norm statistics that validation and saved models use;
//! - `resume`: what a checkpoint holds beyond the model, so that a run resumes exactly.
//!
//! The training step itself is `crate::optim::train_step`.

mod config;
mod precise_bn;
mod resume;
mod run;

pub(crate) use config::parse_in_range;
pub use config::{lr_at, LrSchedule, TrainArgs, TrainConfig, DEFAULT_PRECISE_BN};
pub use precise_bn::{precise_bn_loader, precise_bn_pairs, precise_bn_statistics};
pub use resume::Progress;

use crate::gpu::Gpu;
use anyhow::Result;
use std::path::Path;

/// How a run is carried out, apart from what it computes.
#[derive(Clone, Copy, Debug)]
pub struct TrainOptions {
    /// Image decoding threads.
    pub workers: usize,
    pub progress_bar: bool,
}

pub struct TrainSummary {
    pub steps: u64,
    pub last_loss: f32,
    pub losses: Vec<f32>,
    pub best_main_score: Option<f64>,
}

/// Trains; `resume` continues the run in `run_dir` exactly where its last checkpoint left it
/// (taking only `epochs` and `max_steps` from `cfg`).
pub fn train(
    gpu: &Gpu,
    cfg: TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    run::Run::setup(gpu, cfg, run_dir, resume, *opts)?.train_loop()
}

/// `asna train`: trains and prints a one-line summary.
pub fn run(gpu: &Gpu, args: &TrainArgs) -> Result<()> {
    let opts = TrainOptions {
        workers: args.workers,
        progress_bar: !args.quiet,
    };
    let s = train(gpu, args.config.clone(), &args.out, args.resume, &opts)?;
    let best = s
        .best_main_score
        .filter(|v| v.is_finite())
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "n/a".into());
    eprintln!(
        "trained {} steps on {}; last loss {:.4}; best validation PLCC+SRCC {best}; checkpoints in {}",
        s.steps,
        gpu.info.name,
        s.last_loss,
        args.out.display()
    );
    Ok(())
}
