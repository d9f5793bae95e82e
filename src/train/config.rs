//! `asna train`'s options, each declared once: the field of `TrainConfig` carries its help
//! text and its default for the command line, `TrainConfig::default()` is the command line
//! with nothing given, and the same struct is the record of the run in every checkpoint.

use crate::model::loss::LossWeights;
use crate::model::sorter;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `asna train`'s command line: the run directory, the run's configuration and how the run is
/// carried out. `--root` is required unless `--resume` reads the configuration from the run's
/// checkpoint.
#[derive(clap::Args, Debug)]
#[command(mut_arg("root", |root| root.required_unless_present("resume")))]
pub struct TrainArgs {
    /// Run directory for checkpoints and logs
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub config: TrainConfig,
    /// Image decoding threads
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long)]
    pub quiet: bool,
}

/// Everything that determines a run; stored in every checkpoint, from which `--resume` takes
/// it back (only `epochs` and `max_steps`, how far the run goes, come from the command line
/// then).
///
/// Fields added after the first checkpoints were written default to what those runs did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct TrainConfig {
    /// Dataset format: pipal, kadid, tid2013, tid2008, csv
    #[arg(long, default_value = "csv")]
    pub dataset: String,
    /// Dataset root directory
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Label file (csv format; default ROOT/labels.csv)
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Whether labels rise (higher) or fall (lower) with quality; default per dataset
    #[arg(long)]
    pub direction: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub epochs: u64,
    /// Stop after this many steps in all
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[command(flatten)]
    pub loss: LossWeights,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    /// Pairs per batch; must be 16 (the sorter's length) unless --rank-weight is 0
    #[arg(long, default_value_t = sorter::LENGTH)]
    pub batch: usize,
    /// Epoch from which the learning rate is multiplied by 0.1 (--lr-schedule step)
    #[arg(long, default_value_t = 10)]
    pub lr_decay_epoch: u64,
    // The step schedule's factor, fixed (the paper's).
    #[arg(skip = 0.1)]
    pub lr_decay: f32,
    /// After the warm-up: step (x0.1 from --lr-decay-epoch) or cosine (down to 0 at the last step)
    #[arg(long, value_enum, default_value = "step")]
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Raise the learning rate linearly from 0 to --lr over the first N steps
    #[arg(long, default_value_t = 0, value_name = "N")]
    #[serde(default)]
    pub warmup_steps: u64,
    // Absent from checkpoints made before precise BN existed: 0, as those runs were trained.
    /// Recompute the batch-norm statistics over N fixed training batches for each validation and every saved model (0: use the running statistics)
    #[arg(long, default_value_t = DEFAULT_PRECISE_BN, value_name = "N")]
    #[serde(default)]
    pub precise_bn: usize,
    /// Fraction of reference images held out for validation
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No rotation, flip or lightness augmentation
    #[arg(long = "no-augment", action = clap::ArgAction::SetFalse)]
    pub augment: bool,
    /// Save last.safetensors every N steps (and at each epoch's end)
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Also validate every N steps, keeping best.safetensors (0: at each epoch's end only)
    #[arg(long, default_value_t = 0, value_name = "N")]
    #[serde(default)]
    pub val_every: u64,
    /// Skip batches whose loss is not finite instead of stopping
    #[arg(long)]
    pub skip_nonfinite: bool,
    /// Sorter weights (default: the shipped sorter)
    #[arg(long, value_name = "FILE")]
    pub sorter: Option<PathBuf>,
    /// Start from these weights instead of a random initialisation
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    // The run's length in steps, fixed when it starts (the cosine schedule ends here), so that
    // a resumed run follows the same schedule whatever its --max-steps.
    #[arg(skip)]
    #[serde(default)]
    pub schedule_steps: u64,
}

impl Default for TrainConfig {
    /// The command line's defaults, with no dataset root.
    fn default() -> Self {
        let command = <TrainConfig as clap::Args>::augment_args(clap::Command::new("train"));
        let matches = command
            .try_get_matches_from(["train"])
            .expect("every option of TrainConfig has a default or is optional");
        <TrainConfig as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("the defaults parse")
    }
}

/// Precise-BN batches unless `--precise-bn` says otherwise: 10 batches of 16 pairs put 320
/// images through each layer (the deepest layers still see 200k values per channel), enough for
/// statistics that no longer move with the choice of batches, at the cost of about three
/// training steps per validation or checkpoint.
pub const DEFAULT_PRECISE_BN: usize = 10;

/// How the learning rate falls after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Multiplied by 0.1 from --lr-decay-epoch on.
    #[default]
    Step,
    /// Half a cosine from --lr down to 0 at the run's last step.
    Cosine,
}

/// Learning rate of the step with 0-based index `step`, in `epoch`: linear from 0 over the
/// first `warmup_steps` (the first step gets lr / warmup_steps), then the schedule (the cosine
/// runs from the warm-up's end to `schedule_steps`).
pub fn lr_at(cfg: &TrainConfig, step: u64, epoch: u64) -> f32 {
    let after_warmup = match cfg.lr_schedule {
        LrSchedule::Step if epoch >= cfg.lr_decay_epoch => cfg.lr * cfg.lr_decay,
        LrSchedule::Step => cfg.lr,
        LrSchedule::Cosine => {
            let span = cfg.schedule_steps.saturating_sub(cfg.warmup_steps).max(1);
            let t = (step.saturating_sub(cfg.warmup_steps) as f64 / span as f64).min(1.0);
            (cfg.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
        }
    };
    if step < cfg.warmup_steps {
        after_warmup * (step + 1) as f32 / cfg.warmup_steps as f32
    } else {
        after_warmup
    }
}
