//! Data pipeline for ASNA: image decoding, dataset readers (PIPAL, KADID-10k, TID2013/2008, CSV),
//! the train/validation split by reference, label standardisation, crops and augmentation, and
//! work on background threads delivered in order: the deterministic batch loader and the
//! decoding of whole pairs for scoring. Randomness only from [`crate::rng::Rng`].
//!
//! Errors are `anyhow` errors of one line naming the file (and the line, for label files).

pub mod augment;
pub mod background;
pub mod datasets;
pub mod image_io;
mod jpeg_scan;
pub(crate) mod labels;
pub mod loader;
pub mod split;

pub use augment::{
    center_crop_pair, lab_to_rgb, random_crop_pair, rgb_to_lab, scale_lightness, tta_variants,
    Augment,
};
pub use background::{
    decode_pairs_in_background, load_pair_at_least, next_chunk, pair_bytes, InOrder,
    DECODE_BUDGET_BYTES,
};
pub use datasets::{open_dataset, reference_set, Dataset, DatasetFormat, Direction, PairRecord};
pub use image_io::{
    check_min_size, check_same_size, decode_rgb, load_pair, load_rgb, rgb_from_samples, SampleType,
    MAX_PIXELS, MAX_SIDE,
};
pub use loader::{batch_rng, epoch_order, num_batches, Batch, BatchLoader, LoaderConfig};
pub use split::{reference_groups, split_by_reference, LabelScaler};
