//! `asna synth`: a synthetic full-reference IQA dataset built from reference photographs.
//!
//! Each reference image (e.g. the 24 Kodak images) gives `crops_per_ref` square crops
//! (default 288x288, positions drawn from the seed). Every crop is distorted by a bank of
//! distortions modelled on TID2013's (Ponomarenko et al. 2015, "Image database TID2013:
//! peculiarities, results and perspectives"), five levels each, and each distorted image is
//! labelled with TID2013's human MOS for its type and level (mean over TID2013's 25 references,
//! table embedded from `data/tid2013_type_level_mos.csv`).
//!
//! Output (`out/`):
//! * `ref/<stem>_c<k>.png`: reference crops (k from 0);
//! * `dist/<stem>_c<k>_t<TT>_l<L>.png`: distorted crops (TT = TID2013 type, L = level 1..5);
//! * `synth.json`: the config, each crop's position, each image's strength, measured PSNR,
//!   PSNR target and whether it was met;
//! * `labels.csv` (written last): `dis_img_path,dis_type,ref_img_path,score,ref_source`, paths
//!   relative to `out`, `dis_type` like `t01_additive_gaussian_noise`, score = TID2013 MOS,
//!   `ref_source` the photograph's name, shared by its crops (training's split keeps them
//!   together).
//!
//! Every file is written through [`crate::files::write_atomic`] (a hidden temporary file
//! beside it, renamed over it), so an interrupted run leaves no half-written file under a final
//! name, and no `labels.csv` at all (a stale one from an
//! earlier run in the same directory is removed first).
//!
//! Implemented TID2013 types (numbers are TID2013's):
//! 1 additive Gaussian noise; 2 additive noise stronger in the colour components (YCbCr, chroma
//! std = 2 x luma std); 3 spatially correlated (pink, 1/f) noise; 4 masked noise (std
//! following local activity); 5 high-frequency noise (high-passed white noise); 6 impulse
//! noise (salt and pepper); 7 quantization noise (uniform step); 8 Gaussian blur; 9 image
//! denoising (noise then an 8x8 sliding-DCT hard-threshold denoiser); 10 JPEG (`image`'s
//! encoder, quality 1..100); 16 mean shift; 17 contrast change; 18 change of colour
//! saturation; 19 multiplicative Gaussian noise; 21 lossy compression of noisy images (noise
//! then an 8x8 DCT coder with quantisation step 4 sigma); 22 colour quantization with dither
//! (minimum-variance palette, Floyd-Steinberg); 23 chromatic aberrations (R/B shifted
//! against G, and defocused).
//!
//! Skipped, and why:
//! * 11 JPEG2000 and 13 JPEG2000 transmission errors: no JPEG2000 codec among the dependencies.
//! * 12 JPEG transmission errors: needs TID2013's error channel and error-tolerant decoder.
//! * 14 non-eccentricity pattern noise: not described precisely enough to reproduce.
//! * 15 local block-wise distortions: block layout and colours unknown, and TID2013's MOS
//!   rises with the level for this type (level 1 is the worst), so a PSNR-ordered
//!   reproduction would carry wrong labels.
//! * 20 comfort noise: specific to one codec's noise-injecting decoder.
//! * 24 sparse sampling and reconstruction: needs TID2013's compressive-sensing reconstruction.
//!
//! Levels (see `calibrate`): the PSNR types are searched per crop to PSNR 33, 30, 27, 24,
//! 21 dB (levels 1..5) within 0.5 dB; mean shift, contrast and saturation use fixed ladders
//! whose directions alternate as in TID2013 (see `distortions::MEAN_SHIFT_LADDER`,
//! `CONTRAST_LADDER`, `SATURATION_LADDER`).
//!
//! Determinism: each image's randomness comes from `Rng::derive(seed, key(ref index, crop,
//! type, level))` and each crop position from `key(ref index, crop, 0, 0)`, so the output is
//! byte-identical for a seed whatever the thread scheduling.

pub mod calibrate;
pub mod dataset;
pub mod distortions;
pub mod labels;

use image::RgbImage;

pub use calibrate::{calibrate, Calibrated, Levels, PSNR_TARGETS, TOLERANCE_DB};
pub use dataset::{run, CropRecord, ImageRecord, SynthConfig, SynthSummary, DEFAULT_SIZE};
pub use distortions::{distortion, DistortFn, Distortion, BANK, SKIPPED};
pub use labels::{mos, mos_table, MosEntry};

/// PSNR in dB between two 8-bit RGB images of equal size, over all three channels, peak 255.
/// Infinite for identical images. Panics if the sizes differ.
pub fn psnr_u8(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "psnr_u8: images differ in size"
    );
    let mut se: u64 = 0;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = *x as i64 - *y as i64;
        se += (d * d) as u64;
    }
    if se == 0 {
        return f64::INFINITY;
    }
    let mse = se as f64 / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

// `asna synth`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Directory of reference photographs
    #[arg(long, value_name = "DIR")]
    pub refs: std::path::PathBuf,
    /// Output directory (images and labels.csv)
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// 288x288 crops per reference image (1-64)
    #[arg(long, default_value_t = 1, value_parser = |s: &str| crate::options::between::<usize>("--crops", s, 1.0, 64.0))]
    pub crops: usize,
    #[arg(long)]
    pub quiet: bool,
}

/// `--out` may be neither `--refs` nor inside it, nor hold it: synth reads every photograph
/// under `--refs`, subfolders included, and would take its own outputs for references (or
/// write beside the photographs).
fn refuse_nested(refs: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let Ok(refs_real) = refs.canonicalize() else {
        return Ok(()); // a missing --refs is reported where it is read
    };
    // --out may not exist yet: resolve its nearest existing ancestor.
    let mut probe = out.to_path_buf();
    let mut tail = Vec::new();
    let out_real = loop {
        if let Ok(real) = probe.canonicalize() {
            break tail
                .iter()
                .rev()
                .fold(real, |p: std::path::PathBuf, c| p.join(c));
        }
        match (probe.file_name().map(|n| n.to_os_string()), probe.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                probe = if parent.as_os_str().is_empty() {
                    std::path::PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return Ok(()),
        }
    };
    if out_real.starts_with(&refs_real) || refs_real.starts_with(&out_real) {
        anyhow::bail!(
            "{}: --out and --refs {} are the same folder or one holds the other; give the dataset a folder of its own",
            out.display(),
            refs.display()
        );
    }
    Ok(())
}

/// `asna synth`: builds the dataset and prints a summary line.
pub fn run_command(args: &SynthArgs) -> anyhow::Result<()> {
    refuse_nested(&args.refs, &args.out)?;
    let mut cfg = SynthConfig::new(args.refs.clone(), args.out.clone());
    cfg.seed = args.seed;
    cfg.crops_per_ref = args.crops;
    let s = run(&cfg, !args.quiet)?;
    eprintln!(
        "{} distorted images of {} references written to {} ({} missed their PSNR target)",
        s.images.len(),
        s.n_refs,
        cfg.out.display(),
        s.out_of_tolerance
    );
    Ok(())
}
