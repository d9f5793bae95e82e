//! The dataset builder behind `asna synth`.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;

use super::calibrate::{calibrate, TOLERANCE_DB};
use super::distortions::{distortion, Distortion, BANK};
use super::labels::mos;
use crate::files::write_atomic;
use crate::rng::Rng;

/// Default crop side.
pub const DEFAULT_SIZE: u32 = 288;

/// Worker threads (over references).
const THREADS: usize = 2;

#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Directory of reference images (PNG, JPEG, WebP, TIFF or BMP, here and in subfolders; other files are ignored).
    pub refs: PathBuf,
    /// Output directory (created if missing).
    pub out: PathBuf,
    pub seed: u64,
    /// Crops per reference image (default 1).
    pub crops_per_ref: usize,
    /// Crop side in pixels (default 288).
    pub size: u32,
    /// TID2013 type numbers to produce; None = every implemented type.
    pub types: Option<Vec<u32>>,
}

impl SynthConfig {
    /// Defaults: seed 0, one crop per reference, 288 px, all types.
    pub fn new(refs: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        SynthConfig {
            refs: refs.into(),
            out: out.into(),
            seed: 0,
            crops_per_ref: 1,
            size: DEFAULT_SIZE,
            types: None,
        }
    }
}

/// One reference crop.
#[derive(Clone, Debug, PartialEq)]
pub struct CropRecord {
    /// Relative to `out`, e.g. `ref/kodim01_c0.png`.
    pub ref_img_path: String,
    /// The source reference file.
    pub source: PathBuf,
    pub crop: usize,
    pub x: u32,
    pub y: u32,
}

/// One distorted image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRecord {
    /// Relative to `out`, e.g. `dist/kodim01_c0_t01_l1.png`.
    pub dis_img_path: String,
    pub ref_img_path: String,
    /// The reference photograph's name (its stem, prefixed by its subfolders): every crop of one
    /// photograph shares it, and the split keeps them together.
    pub ref_source: String,
    pub tid_type: u32,
    /// e.g. `t01_additive_gaussian_noise`.
    pub dis_type: String,
    pub level: u32,
    /// TID2013 MOS for (type, level).
    pub score: f64,
    /// The distortion's parameter (see each function in `distortions`).
    pub strength: f64,
    /// Measured PSNR against the reference crop (dB; infinite if identical).
    pub psnr: f64,
    /// None for fixed-ladder types.
    pub target_psnr: Option<f64>,
    /// |psnr - target| <= 0.5 dB; None for fixed-ladder types.
    pub within_tolerance: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SynthSummary {
    pub n_refs: usize,
    pub crops: Vec<CropRecord>,
    /// In labels.csv order: reference, crop, type, level.
    pub images: Vec<ImageRecord>,
    /// PSNR-calibrated images that missed their target by more than 0.5 dB.
    pub out_of_tolerance: usize,
}

/// The Rng stream for (reference index, crop, type, level); type 0 / level 0 = crop position.
fn stream_key(ref_idx: usize, crop: usize, tid_type: u32, level: u32) -> u64 {
    ((ref_idx as u64) << 32) ^ ((crop as u64) << 16) ^ ((tid_type as u64) << 8) ^ level as u64
}

fn is_image_file(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .map(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "png" | "jpg" | "jpeg" | "webp" | "tif" | "tiff" | "bmp"
                )
            })
            .unwrap_or(false)
}

/// The reference images in `dir` and in its subfolders (one per source, as
/// `tools/install-photos.sh` lays them out), sorted by path relative to `dir`.
fn list_refs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = pending.pop() {
        let rd = fs::read_dir(&d)
            .map_err(|e| anyhow!("cannot read reference directory {}: {e}", d.display()))?;
        for entry in rd {
            let entry = entry
                .map_err(|e| anyhow!("cannot read reference directory {}: {e}", d.display()))?;
            let p = entry.path();
            // File types of the entries themselves: a link to a folder is not followed, so a
            // cycle of links cannot make the walk endless.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && depth < MAX_REF_DEPTH {
                pending.push((p, depth + 1));
            } else if is_image_file(&p) {
                v.push(p);
            }
        }
    }
    v.sort_by(|a, b| a.strip_prefix(dir).ok().cmp(&b.strip_prefix(dir).ok()));
    if v.is_empty() {
        bail!(
            "no reference images (PNG, JPEG, WebP, TIFF or BMP) in {} or its subfolders",
            dir.display()
        );
    }
    Ok(v)
}

/// How deep `list_refs` looks below the reference folder.
const MAX_REF_DEPTH: usize = 4;

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .expect("PNG encoding to memory cannot fail");
    buf
}

/// The name a reference's outputs take: its file stem, prefixed by the subfolders it is in
/// below the reference folder (`plasma/Autumn.jpg` -> `plasma-Autumn`), so that sources may
/// reuse file names.
fn stem_of(refs: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(refs).unwrap_or(p);
    let mut parts: Vec<String> = rel
        .parent()
        .map(|d| d.iter().map(|c| c.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    parts.push(
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    parts.join("-")
}

/// What one reference produced.
struct RefOutput {
    crops: Vec<CropRecord>,
    images: Vec<ImageRecord>,
}

fn process_ref(
    cfg: &SynthConfig,
    types: &[&'static Distortion],
    ref_idx: usize,
    path: &Path,
    pb: &indicatif::ProgressBar,
    abort: &AtomicBool,
) -> Result<RefOutput> {
    let img = crate::data::load_rgb(path)
        .map_err(|e| anyhow!("cannot read reference image: {}", one_line(e)))?;
    let (w, h) = img.dimensions();
    if w < cfg.size || h < cfg.size {
        bail!(
            "reference image {} is {w}x{h}, smaller than the {}x{} crop",
            path.display(),
            cfg.size,
            cfg.size
        );
    }
    let stem = stem_of(&cfg.refs, path);
    let mut out = RefOutput {
        crops: Vec::new(),
        images: Vec::new(),
    };
    for crop in 0..cfg.crops_per_ref {
        let mut crng = Rng::derive(cfg.seed, stream_key(ref_idx, crop, 0, 0));
        let x = crng.below((w - cfg.size + 1) as u64) as u32;
        let y = crng.below((h - cfg.size + 1) as u64) as u32;
        let reference = image::imageops::crop_imm(&img, x, y, cfg.size, cfg.size).to_image();
        let ref_rel = format!("ref/{stem}_c{crop}.png");
        write_atomic(&cfg.out.join(&ref_rel), &png_bytes(&reference))?;
        out.crops.push(CropRecord {
            ref_img_path: ref_rel.clone(),
            source: path.to_path_buf(),
            crop,
            x,
            y,
        });
        for d in types {
            if abort.load(Ordering::Relaxed) {
                bail!("aborted");
            }
            for level in 1..=5u32 {
                let rng = Rng::derive(cfg.seed, stream_key(ref_idx, crop, d.tid_type, level));
                let c = calibrate(d, &reference, level, &rng);
                let rel = format!("dist/{stem}_c{crop}_t{:02}_l{level}.png", d.tid_type);
                write_atomic(&cfg.out.join(&rel), &png_bytes(&c.image))?;
                out.images.push(ImageRecord {
                    dis_img_path: rel,
                    ref_img_path: ref_rel.clone(),
                    ref_source: stem.clone(),
                    tid_type: d.tid_type,
                    dis_type: d.dis_type(),
                    level,
                    score: mos(d.tid_type, level)
                        .expect("every implemented type has TID2013 labels"),
                    strength: c.strength,
                    psnr: c.psnr,
                    target_psnr: c.target_psnr,
                    within_tolerance: c.within_tolerance,
                });
            }
            pb.inc(1);
        }
    }
    Ok(out)
}

/// Build the dataset described by `cfg`. `progress`: show a progress bar on stderr.
pub fn run(cfg: &SynthConfig, progress: bool) -> Result<SynthSummary> {
    if cfg.size == 0 {
        bail!("crop size must be positive");
    }
    if cfg.crops_per_ref == 0 {
        bail!("crops per reference must be at least 1");
    }
    let types: Vec<&'static Distortion> = match &cfg.types {
        None => BANK.iter().collect(),
        Some(ts) => {
            let mut seen = HashSet::new();
            let mut v = Vec::new();
            for &t in ts {
                let d = distortion(t).ok_or_else(|| {
                    let have: Vec<String> = BANK.iter().map(|d| d.tid_type.to_string()).collect();
                    anyhow!(
                        "TID2013 type {t} is not implemented (implemented: {})",
                        have.join(",")
                    )
                })?;
                if seen.insert(t) {
                    v.push(d);
                }
            }
            v.sort_by_key(|d| d.tid_type);
            v
        }
    };
    if types.is_empty() {
        bail!("no distortion types selected");
    }

    // Check every reference before writing anything.
    let refs = list_refs(&cfg.refs)?;
    let mut stems = HashSet::new();
    for p in &refs {
        let (w, h) = image::image_dimensions(p).map_err(|e| {
            anyhow!(
                "cannot read reference image {}: {}",
                p.display(),
                one_line(e)
            )
        })?;
        if w < cfg.size || h < cfg.size {
            bail!(
                "reference image {} is {w}x{h}, smaller than the {}x{} crop",
                p.display(),
                cfg.size,
                cfg.size
            );
        }
        if !stems.insert(stem_of(&cfg.refs, p)) {
            bail!(
                "reference image {} has the same name stem as another reference",
                p.display()
            );
        }
    }

    for d in [cfg.out.clone(), cfg.out.join("ref"), cfg.out.join("dist")] {
        fs::create_dir_all(&d).map_err(|e| {
            anyhow!(
                "cannot create output directory {}: {}",
                d.display(),
                one_line(e)
            )
        })?;
    }
    for stale in ["labels.csv", "synth.json"] {
        let p = cfg.out.join(stale);
        if p.exists() {
            fs::remove_file(&p)
                .map_err(|e| anyhow!("cannot remove stale {}: {}", p.display(), one_line(e)))?;
        }
    }

    let total = (refs.len() * cfg.crops_per_ref * types.len()) as u64;
    let pb = crate::progress::bar(
        total,
        progress,
        "synth {bar:40} {pos}/{len} crop x type  {elapsed_precise} eta {eta}",
    );

    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<RefOutput>>>> =
        Mutex::new((0..refs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..THREADS.min(refs.len()) {
            s.spawn(|| loop {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= refs.len() {
                    break;
                }
                let r = process_ref(cfg, &types, i, &refs[i], &pb, &abort);
                if r.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    pb.finish_and_clear();

    let results = results.into_inner().unwrap();
    // Report the real failure of the lowest-numbered reference (not an "aborted" echo).
    let mut first_err = None;
    for r in results.iter().flatten() {
        if let Err(e) = r {
            if e.to_string() != "aborted" {
                first_err = Some(anyhow!("{e}"));
                break;
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut summary = SynthSummary {
        n_refs: refs.len(),
        crops: Vec::new(),
        images: Vec::new(),
        out_of_tolerance: 0,
    };
    for r in results {
        let r = r.ok_or_else(|| anyhow!("internal error: a reference was not processed"))??;
        summary.crops.extend(r.crops);
        summary.images.extend(r.images);
    }
    summary.out_of_tolerance = summary
        .images
        .iter()
        .filter(|r| r.within_tolerance == Some(false))
        .count();

    write_atomic(
        &cfg.out.join("synth.json"),
        synth_json(cfg, &types, &summary).as_bytes(),
    )?;

    let mut wr = csv::Writer::from_writer(Vec::new());
    wr.write_record([
        "dis_img_path",
        "dis_type",
        "ref_img_path",
        "score",
        "ref_source",
    ])?;
    for r in &summary.images {
        wr.write_record([
            r.dis_img_path.as_str(),
            r.dis_type.as_str(),
            r.ref_img_path.as_str(),
            &r.score.to_string(),
            r.ref_source.as_str(),
        ])?;
    }
    let bytes = wr.into_inner().context("csv buffer")?;
    write_atomic(&cfg.out.join("labels.csv"), &bytes)?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// synth.json (written by hand: serde_json is not a dependency of this module)

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_opt_num(v: Option<f64>) -> String {
    v.map(json_num).unwrap_or_else(|| "null".into())
}

fn json_opt_bool(v: Option<bool>) -> String {
    v.map(|b| b.to_string()).unwrap_or_else(|| "null".into())
}

fn synth_json(cfg: &SynthConfig, types: &[&'static Distortion], s: &SynthSummary) -> String {
    let mut o = String::new();
    o.push_str("{\n  \"config\": {");
    o.push_str(&format!(
        "\"refs\": {}, ",
        json_str(&cfg.refs.to_string_lossy())
    ));
    o.push_str(&format!(
        "\"out\": {}, ",
        json_str(&cfg.out.to_string_lossy())
    ));
    o.push_str(&format!("\"seed\": {}, ", cfg.seed));
    o.push_str(&format!("\"crops_per_ref\": {}, ", cfg.crops_per_ref));
    o.push_str(&format!("\"size\": {}, ", cfg.size));
    let ts: Vec<String> = types.iter().map(|d| d.tid_type.to_string()).collect();
    o.push_str(&format!("\"types\": [{}]", ts.join(", ")));
    o.push_str("},\n");
    let targets: Vec<String> = super::calibrate::PSNR_TARGETS
        .iter()
        .map(|v| json_num(*v))
        .collect();
    o.push_str(&format!(
        "  \"psnr_targets_db\": [{}],\n  \"tolerance_db\": {},\n",
        targets.join(", "),
        json_num(TOLERANCE_DB)
    ));
    o.push_str(&format!(
        "  \"n_refs\": {},\n  \"n_images\": {},\n  \"out_of_tolerance\": {},\n",
        s.n_refs,
        s.images.len(),
        s.out_of_tolerance
    ));
    o.push_str("  \"crops\": [\n");
    for (i, c) in s.crops.iter().enumerate() {
        o.push_str(&format!(
            "    {{\"ref_img_path\": {}, \"source\": {}, \"crop\": {}, \"x\": {}, \"y\": {}}}{}\n",
            json_str(&c.ref_img_path),
            json_str(&c.source.to_string_lossy()),
            c.crop,
            c.x,
            c.y,
            if i + 1 < s.crops.len() { "," } else { "" }
        ));
    }
    o.push_str("  ],\n  \"images\": [\n");
    for (i, r) in s.images.iter().enumerate() {
        o.push_str(&format!(
            "    {{\"dis_img_path\": {}, \"ref_img_path\": {}, \"dis_type\": {}, \"type\": {}, \"level\": {}, \"score\": {}, \"strength\": {}, \"psnr\": {}, \"target_psnr\": {}, \"within_tolerance\": {}}}{}\n",
            json_str(&r.dis_img_path),
            json_str(&r.ref_img_path),
            json_str(&r.dis_type),
            r.tid_type,
            r.level,
            json_num(r.score),
            json_num(r.strength),
            json_num(r.psnr),
            json_opt_num(r.target_psnr),
            json_opt_bool(r.within_tolerance),
            if i + 1 < s.images.len() { "," } else { "" }
        ));
    }
    o.push_str("  ]\n}\n");
    o
}
