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
    #[arg(long, default_value_t = 2, value_parser = |s: &str| parse_in_range::<usize>("--workers", s))]
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
    #[arg(long, default_value_t = 20, value_parser = |s: &str| parse_in_range::<u64>("--epochs", s))]
    pub epochs: u64,
    /// Stop after this many steps in all
    #[arg(long, value_parser = |s: &str| parse_in_range::<u64>("--max-steps", s))]
    pub max_steps: Option<u64>,
    #[command(flatten)]
    pub loss: LossWeights,
    #[arg(long, default_value_t = 1e-4, value_parser = |s: &str| parse_in_range::<f32>("--lr", s), allow_negative_numbers = true)]
    pub lr: f32,
    /// Pairs per batch; must be 16 (the sorter's length) unless --rank-weight is 0
    #[arg(long, default_value_t = sorter::LENGTH, value_parser = |s: &str| parse_in_range::<usize>("--batch", s))]
    pub batch: usize,
    /// Epoch from which the learning rate is multiplied by 0.1 (--lr-schedule step)
    #[arg(long, default_value_t = 10, value_parser = |s: &str| parse_in_range::<u64>("--lr-decay-epoch", s))]
    pub lr_decay_epoch: u64,
    // The step schedule's factor, fixed (the paper's).
    #[arg(skip = 0.1)]
    pub lr_decay: f32,
    /// After the warm-up: step (x0.1 from --lr-decay-epoch) or cosine (down to 0 at the last step)
    #[arg(long, value_enum, default_value = "step")]
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Raise the learning rate linearly from 0 to --lr over the first N steps
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = |s: &str| parse_in_range::<u64>("--warmup-steps", s))]
    #[serde(default)]
    pub warmup_steps: u64,
    // Absent from checkpoints made before precise BN existed: 0, as those runs were trained.
    /// Recompute the batch-norm statistics over N fixed training batches for each validation and every saved model (0: use the running statistics)
    #[arg(long, default_value_t = DEFAULT_PRECISE_BN, value_name = "N", value_parser = |s: &str| parse_in_range::<usize>("--precise-bn", s))]
    #[serde(default)]
    pub precise_bn: usize,
    /// Fraction of reference images held out for validation
    #[arg(long, default_value_t = 0.2, value_parser = |s: &str| parse_in_range::<f64>("--val-fraction", s), allow_negative_numbers = true)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No rotation, flip or lightness augmentation
    #[arg(long = "no-augment", action = clap::ArgAction::SetFalse)]
    pub augment: bool,
    /// Save last.safetensors every N steps (and at each epoch's end)
    #[arg(long, default_value_t = 200, value_parser = |s: &str| parse_in_range::<u64>("--checkpoint-every", s))]
    pub checkpoint_every: u64,
    /// Also validate every N steps, keeping best.safetensors (0: at each epoch's end only)
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = |s: &str| parse_in_range::<u64>("--val-every", s))]
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

/// The accepted range of every numeric option, `(option, lowest, highest)`, both ends
/// included (`--lr`'s lowest excluded: any positive rate). The command line checks a value when it is parsed; `--resume` checks the
/// configuration stored in a checkpoint against the same table ([`TrainConfig::check`]).
const RANGES: &[(&str, f64, f64)] = &[
    ("--epochs", 1.0, 1e6),
    ("--max-steps", 1.0, 1e9),
    // Positive: a rate of 0 trains nothing, a negative one climbs the loss.
    ("--lr", 0.0, 1.0),
    ("--batch", 1.0, 1024.0),
    ("--lr-decay-epoch", 0.0, 1e6),
    ("--warmup-steps", 0.0, 1e9),
    ("--precise-bn", 0.0, 10_000.0),
    // Below 1: some references must be left to train on.
    ("--val-fraction", 0.0, 0.95),
    ("--checkpoint-every", 1.0, 1e9),
    ("--val-every", 0.0, 1e9),
    ("--mse-weight", 0.0, 1.0),
    ("--rank-weight", 0.0, 1e3),
    ("--workers", 1.0, 256.0),
];

/// `Ok` when `value` is a finite number within `option`'s range in [`RANGES`]; else the
/// sentence saying what is accepted.
pub(crate) fn check_range(option: &str, value: f64) -> Result<(), String> {
    let &(_, lo, hi) = RANGES
        .iter()
        .find(|r| r.0 == option)
        .expect("every range-checked option is in RANGES");
    crate::options::check_between(option, value, lo, hi, option == "--lr")
}

/// A numeric option's parser: the value as `T`, then within its range in [`RANGES`].
pub(crate) fn parse_in_range<T>(option: &str, s: &str) -> Result<T, String>
where
    T: std::str::FromStr + Copy + Into<crate::options::InRange>,
{
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("{option} must be a number (got {s:?})"))?;
    check_range(option, v.into().0)?;
    Ok(v)
}

impl TrainConfig {
    /// Checks every numeric field against the ranges the command line enforces: a checkpoint's
    /// stored configuration (which `--resume` takes) must be one the command line could have
    /// written.
    pub fn check(&self) -> Result<(), String> {
        check_range("--epochs", self.epochs as f64)?;
        if let Some(m) = self.max_steps {
            check_range("--max-steps", m as f64)?;
        }
        check_range("--lr", self.lr as f64)?;
        check_range("--batch", self.batch as f64)?;
        check_range("--lr-decay-epoch", self.lr_decay_epoch as f64)?;
        check_range("--warmup-steps", self.warmup_steps as f64)?;
        check_range("--precise-bn", self.precise_bn as f64)?;
        check_range("--val-fraction", self.val_fraction)?;
        check_range("--checkpoint-every", self.checkpoint_every as f64)?;
        check_range("--val-every", self.val_every as f64)?;
        check_range("--mse-weight", self.loss.mse as f64)?;
        check_range("--rank-weight", self.loss.rank as f64)?;
        for (what, v) in [
            ("the learning-rate decay", self.lr_decay),
            ("the conv L2 weight", self.loss.l2_conv),
            ("the dense L2 weight", self.loss.l2_dense),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(format!("{what} must be a number from 0 to 1 (got {v})"));
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_configurations_are_checked_by_the_command_line_ranges() {
        let ok = TrainConfig::default();
        assert_eq!(ok.check(), Ok(()));
        let cases: Vec<(&str, Box<dyn Fn(&mut TrainConfig)>)> = vec![
            ("--batch", Box::new(|c| c.batch = 0)),
            (
                "--epochs",
                Box::new(|c| c.epochs = 1_000_000_000_000_000_000),
            ),
            ("--max-steps", Box::new(|c| c.max_steps = Some(0))),
            ("--lr", Box::new(|c| c.lr = f32::NAN)),
            ("--lr", Box::new(|c| c.lr = -1e-4)),
            ("--lr", Box::new(|c| c.lr = 0.0)),
            ("--val-fraction", Box::new(|c| c.val_fraction = 2.0)),
            ("--checkpoint-every", Box::new(|c| c.checkpoint_every = 0)),
            ("--precise-bn", Box::new(|c| c.precise_bn = usize::MAX)),
            ("--warmup-steps", Box::new(|c| c.warmup_steps = u64::MAX)),
            ("--val-every", Box::new(|c| c.val_every = u64::MAX)),
            (
                "--lr-decay-epoch",
                Box::new(|c| c.lr_decay_epoch = u64::MAX),
            ),
            ("--mse-weight", Box::new(|c| c.loss.mse = 2.0)),
            ("--rank-weight", Box::new(|c| c.loss.rank = f32::INFINITY)),
            ("learning-rate decay", Box::new(|c| c.lr_decay = -0.1)),
            ("conv L2", Box::new(|c| c.loss.l2_conv = f32::NAN)),
            ("dense L2", Box::new(|c| c.loss.l2_dense = 5.0)),
        ];
        for (what, break_it) in cases {
            let mut c = ok.clone();
            break_it(&mut c);
            let e = c.check().expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
        }
        // The parser and the stored check agree at the ends of a range.
        assert!(parse_in_range::<f64>("--val-fraction", "0.95").is_ok());
        assert!(parse_in_range::<f64>("--val-fraction", "0.951").is_err());
        assert!(parse_in_range::<f32>("--lr", "1e-9").is_ok());
        assert!(parse_in_range::<usize>("--batch", "1024").is_ok());
        assert!(parse_in_range::<usize>("--batch", "1025").is_err());
    }
}
