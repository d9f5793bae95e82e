//! A training run's directory: the files `asna train` writes there and `asna plot-run` reads.

/// The latest checkpoint, from which `--resume` continues.
pub const LAST_CHECKPOINT: &str = "last.safetensors";
/// The checkpoint with the best validation score so far.
pub const BEST_CHECKPOINT: &str = "best.safetensors";
/// One JSON line per validation: step, epoch, training loss and the validation correlations.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The baselines' (PSNR, SSIM, MS-SSIM, GMSD) correlations with the labels on the validation pairs.
pub const BASELINES_FILE: &str = "baselines.json";
/// The references of the training and validation sets.
pub const SPLIT_FILE: &str = "split.json";
/// The run's configuration, for the record (checkpoints hold it too).
pub const CONFIG_FILE: &str = "config.json";

/// Every file a run writes into its directory.
pub const RUN_FILES: [&str; 6] = [
    LAST_CHECKPOINT,
    BEST_CHECKPOINT,
    METRICS_FILE,
    BASELINES_FILE,
    SPLIT_FILE,
    CONFIG_FILE,
];
