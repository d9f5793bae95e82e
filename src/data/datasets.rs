//! Readers for the IQA datasets in their native layouts (PIPAL, KADID-10k, TID2013, TID2008)
//! and for a generic CSV list.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail};

use super::labels::{
    csv_rows, escape_controls, field, header_columns, parse_score, read_label_bytes, safe_relative,
    whitespace_rows, DirIndex, Row,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetFormat {
    Pipal,
    Kadid,
    Tid2013,
    Tid2008,
    Csv,
}

impl DatasetFormat {
    /// Canonical names, as accepted by `FromStr` and printed by `Display`.
    pub fn all_names() -> &'static [&'static str] {
        &["pipal", "kadid", "tid2013", "tid2008", "csv"]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Pipal => "pipal",
            DatasetFormat::Kadid => "kadid",
            DatasetFormat::Tid2013 => "tid2013",
            DatasetFormat::Tid2008 => "tid2008",
            DatasetFormat::Csv => "csv",
        }
    }

    /// The score direction of the format's own labels (all the native formats: higher is better).
    pub fn default_direction(self) -> Direction {
        Direction::HigherIsBetter
    }

    /// Labels file (or, for PIPAL, folder) used when none is given.
    pub fn default_labels(self, root: &Path) -> PathBuf {
        match self {
            DatasetFormat::Pipal => root.join("Train_Label"),
            DatasetFormat::Kadid => root.join("dmos.csv"),
            DatasetFormat::Tid2013 | DatasetFormat::Tid2008 => root.join("mos_with_names.txt"),
            DatasetFormat::Csv => root.join("labels.csv"),
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "pipal" => DatasetFormat::Pipal,
            "kadid" | "kadid10k" | "kadid-10k" => DatasetFormat::Kadid,
            "tid2013" => DatasetFormat::Tid2013,
            "tid2008" => DatasetFormat::Tid2008,
            "csv" => DatasetFormat::Csv,
            _ => bail!(
                "unknown dataset format \"{s}\" (expected one of: {})",
                DatasetFormat::all_names().join(", ")
            ),
        })
    }
}

/// Which way the dataset's scores point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::HigherIsBetter => "higher",
            Direction::LowerIsBetter => "lower",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "higher" | "higher-is-better" | "mos" => Ok(Direction::HigherIsBetter),
            "lower" | "lower-is-better" | "dmos" => Ok(Direction::LowerIsBetter),
            _ => bail!("unknown score direction \"{s}\" (expected \"higher\" or \"lower\")"),
        }
    }
}

/// One reference / distorted pair with its subjective score.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRecord {
    /// Full path (dataset root joined).
    pub ref_path: PathBuf,
    /// Full path (dataset root joined).
    pub dist_path: PathBuf,
    /// Score in the dataset's own scale and direction.
    pub score: f64,
    /// Distortion type name ("" when unknown).
    pub dis_type: String,
    /// 1-based line of the record in its labels file.
    pub line: usize,
    /// The photograph the reference was cut from, where the labels name one (the optional
    /// `ref_source` column that `asna synth` writes): the split keeps every crop of one
    /// photograph on the same side. `None`: the reference image is its own source.
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub format: DatasetFormat,
    pub root: PathBuf,
    /// The labels file (for PIPAL: the `Train_Label` folder, or the single file given).
    pub labels_file: PathBuf,
    pub pairs: Vec<PairRecord>,
    pub direction: Direction,
}

impl Dataset {
    pub fn scores(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.score).collect()
    }

    pub fn num_references(&self) -> usize {
        self.pairs
            .iter()
            .map(|p| &p.ref_path)
            .collect::<HashSet<_>>()
            .len()
    }
}

/// KADID-10k distortion types 01..25 (names as in the project's `KADID-10k.txt`).
const KADID_TYPES: [&str; 25] = [
    "GBLUR",
    "Lens_Blur",
    "Motion_Blur",
    "Color_Diffusion",
    "Color_Shift",
    "Color_Quantization",
    "Saturation_Dist._HSV",
    "Saturation_Dist._Lab",
    "JP2K",
    "JPEG",
    "AWGN",
    "AWGN_YCbCr",
    "Impulse_Noise",
    "Multiplicative_Noise",
    "Denoising",
    "Brighten",
    "Darken",
    "Mean_Shift",
    "Jitter",
    "Non-eccentricity_patch",
    "Pixelate",
    "Quantization",
    "Color_Block",
    "High_Sharpen",
    "Contrast Dist.",
];

/// TID2013 distortion types 01..24 (names as in the project's `TID2013.txt`, which also calls
/// type 24, sparse sampling and reconstruction, "Multiply_Dist."; kept for agreement with it).
/// TID2008 uses the first 17.
const TID_TYPES: [&str; 24] = [
    "AWGN",
    "Chroma_Noise",
    "Pink_Noise",
    "Masked_Noise",
    "High_Frequency_Noise",
    "Impluse_Noise",
    "Quantization_Noise",
    "GBLUR",
    "Denoising",
    "JPEG",
    "JP2K",
    "JPEG_Transmission_Error",
    "JP2K_Transmission_Error",
    "Non_Eccentricity_Pattern_Noise",
    "Block_Dist.",
    "Mean_Shift",
    "Contrast_Dist.",
    "Saturation_Dist.",
    "Multi._Gaussian Noise",
    "Comfort_Noise",
    "Multiply_Dist.",
    "Dithering",
    "Chroma_Aberrations",
    "Multiply_Dist.",
];

/// Distortion type from a name like `I01_05_3.png`: the second `_` field, 1-based.
fn type_from_name(name: &Path, table: &[&str]) -> String {
    let stem = name.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem.split('_')
        .nth(1)
        .and_then(|t| t.parse::<usize>().ok())
        .and_then(|t| t.checked_sub(1))
        .and_then(|t| table.get(t))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The reference stem of a distorted name: the part before the first `_` (`A0001_00_00.bmp` -> `A0001`).
fn ref_stem(file: &Path, row: &Row, name: &Path) -> anyhow::Result<String> {
    let fname = name.file_name().and_then(|s| s.to_str()).unwrap_or("");
    match fname.split_once('_') {
        Some((stem, _)) if !stem.is_empty() => Ok(stem.to_string()),
        _ => bail!(
            "{}:{}: cannot tell the reference of \"{}\" (expected a name like REF_xx_yy.ext)",
            file.display(),
            row.line,
            name.display()
        ),
    }
}

/// A pair while parsing, with the labels file it came from (PIPAL has one per reference).
struct Parsed {
    rec: PairRecord,
    file: PathBuf,
}

/// Reads a dataset and checks that every image it lists exists.
///
/// `labels` overrides the default labels file (`Train_Label/` for PIPAL, `dmos.csv` for KADID,
/// `mos_with_names.txt` for TID, `labels.csv` for CSV); `direction` overrides the format's
/// default (higher is better for all formats). Image paths in label files must be relative
/// and stay inside `root` (absolute paths and `..` are refused).
pub fn open_dataset(
    format: DatasetFormat,
    root: &Path,
    labels: Option<&Path>,
    direction: Option<Direction>,
) -> anyhow::Result<Dataset> {
    // Messages quote label text, which may hold line breaks (in quoted CSV fields): escaped,
    // so that every error stays one line.
    read_dataset(format, root, labels, direction)
        .map_err(|e| anyhow!(escape_controls(&e.to_string())))
}

fn read_dataset(
    format: DatasetFormat,
    root: &Path,
    labels: Option<&Path>,
    direction: Option<Direction>,
) -> anyhow::Result<Dataset> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("dataset root {} is not a directory", root.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("dataset root {} not found", root.display())
        }
        Err(e) => bail!("dataset root {}: {e}", root.display()),
    }
    let labels_file = labels
        .map(Path::to_path_buf)
        .unwrap_or_else(|| format.default_labels(root));
    let parsed = match format {
        DatasetFormat::Pipal => read_pipal(root, &labels_file)?,
        DatasetFormat::Kadid => read_kadid(root, &labels_file)?,
        DatasetFormat::Tid2013 => read_tid(root, &labels_file, 24)?,
        DatasetFormat::Tid2008 => read_tid(root, &labels_file, 17)?,
        DatasetFormat::Csv => read_csv(root, &labels_file)?,
    };
    if parsed.is_empty() {
        bail!("{}: no image pairs listed", labels_file.display());
    }
    check_duplicates(&parsed)?;
    check_files_exist(&labels_file, &parsed)?;
    Ok(Dataset {
        format,
        root: root.to_path_buf(),
        labels_file,
        pairs: parsed.into_iter().map(|p| p.rec).collect(),
        direction: direction.unwrap_or(format.default_direction()),
    })
}

fn check_duplicates(parsed: &[Parsed]) -> anyhow::Result<()> {
    let mut seen: HashMap<&Path, (&Path, usize)> = HashMap::new();
    for p in parsed {
        if let Some((f0, l0)) = seen.insert(&p.rec.dist_path, (&p.file, p.rec.line)) {
            let first = if f0 == p.file {
                format!("line {l0}")
            } else {
                format!("{}:{l0}", f0.display())
            };
            bail!(
                "{}:{}: duplicate row for distorted image {} (already listed at {first})",
                p.file.display(),
                p.rec.line,
                p.rec.dist_path.display()
            );
        }
    }
    Ok(())
}

fn check_files_exist(labels: &Path, parsed: &[Parsed]) -> anyhow::Result<()> {
    let mut checked: HashSet<&Path> = HashSet::new();
    let mut missing = 0usize;
    let mut first: Option<(&Path, &Path, usize)> = None;
    for p in parsed {
        for path in [&p.rec.ref_path, &p.rec.dist_path] {
            if !checked.insert(path) {
                continue;
            }
            if !path.is_file() {
                missing += 1;
                if first.is_none() {
                    first = Some((path, &p.file, p.rec.line));
                }
            }
        }
    }
    if let Some((path, file, line)) = first {
        bail!(
            "{}: {missing} of {} listed image files missing, the first is {} (listed at {}:{line})",
            labels.display(),
            checked.len(),
            path.display(),
            file.display()
        );
    }
    Ok(())
}

/// The label files of PIPAL: every `*.txt` in the folder (sorted), or the one file given.
fn pipal_label_files(labels: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !labels.is_dir() {
        return Ok(vec![labels.to_path_buf()]);
    }
    let rd = std::fs::read_dir(labels)
        .map_err(|e| anyhow!("{}: cannot list labels folder: {e}", labels.display()))?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{}: no .txt label files in the PIPAL labels folder",
            labels.display()
        );
    }
    Ok(files)
}

fn read_pipal(root: &Path, labels: &Path) -> anyhow::Result<Vec<Parsed>> {
    let files = pipal_label_files(labels)?;
    let refs = DirIndex::new(root.join("Train_Ref"));
    let dist_dirs: Vec<DirIndex> = [
        "Distortion_1",
        "Distortion_2",
        "Distortion_3",
        "Distortion_4",
        "Train_Dis",
    ]
    .iter()
    .map(|d| DirIndex::new(root.join(d)))
    .filter(DirIndex::exists)
    .collect();
    if dist_dirs.is_empty() {
        bail!(
            "{}: no distorted-image folder (expected Distortion_1..Distortion_4 or Train_Dis)",
            root.display()
        );
    }
    let mut out = Vec::new();
    for file in files {
        let bytes = read_label_bytes(&file)?;
        for row in csv_rows(&file, &bytes)? {
            let name = safe_relative(&file, row.line, field(&file, &row, 0, "image name")?)?;
            let score = parse_score(&file, row.line, field(&file, &row, 1, "score")?)?;
            let stem = ref_stem(&file, &row, &name)?;
            let dist_path = dist_dirs
                .iter()
                .find_map(|d| d.find(&name))
                .unwrap_or_else(|| dist_dirs[0].dir.join(&name));
            let ref_path = refs.resolve(Path::new(&format!("{stem}.bmp")));
            out.push(Parsed {
                rec: PairRecord {
                    ref_path,
                    dist_path,
                    score,
                    dis_type: "PIPAL_distortions".into(),
                    line: row.line,
                    source: None,
                },
                file: file.clone(),
            });
        }
    }
    Ok(out)
}

fn read_kadid(root: &Path, labels: &Path) -> anyhow::Result<Vec<Parsed>> {
    let bytes = read_label_bytes(labels)?;
    let rows = csv_rows(labels, &bytes)?;
    let (cols, _) = header_columns(labels, rows.first(), &["dist_img", "ref_img", "dmos"], &[])?;
    let images = DirIndex::new(root.join("images"));
    let mut out = Vec::new();
    for row in rows.iter().skip(1) {
        let dist = safe_relative(labels, row.line, field(labels, row, cols[0], "dist_img")?)?;
        let rf = safe_relative(labels, row.line, field(labels, row, cols[1], "ref_img")?)?;
        let score = parse_score(labels, row.line, field(labels, row, cols[2], "dmos")?)?;
        out.push(Parsed {
            rec: PairRecord {
                ref_path: images.resolve(&rf),
                dist_path: images.resolve(&dist),
                score,
                dis_type: type_from_name(&dist, &KADID_TYPES),
                line: row.line,
                source: None,
            },
            file: labels.to_path_buf(),
        });
    }
    Ok(out)
}

fn read_tid(root: &Path, labels: &Path, n_types: usize) -> anyhow::Result<Vec<Parsed>> {
    let bytes = read_label_bytes(labels)?;
    let rows = whitespace_rows(labels, &bytes)?;
    let dists = DirIndex::new(root.join("distorted_images"));
    let refs = DirIndex::new(root.join("reference_images"));
    let mut ref_cache: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::new();
    for row in &rows {
        let score = parse_score(labels, row.line, field(labels, row, 0, "score")?)?;
        let name = safe_relative(labels, row.line, field(labels, row, 1, "image name")?)?;
        let stem = ref_stem(labels, row, &name)?;
        let ref_path = ref_cache
            .entry(stem.to_lowercase())
            .or_insert_with(|| {
                refs.find_stem(&stem)
                    .unwrap_or_else(|| refs.dir.join(format!("{stem}.bmp")))
            })
            .clone();
        out.push(Parsed {
            rec: PairRecord {
                ref_path,
                dist_path: dists.resolve(&name),
                score,
                dis_type: type_from_name(&name, &TID_TYPES[..n_types]),
                line: row.line,
                source: None,
            },
            file: labels.to_path_buf(),
        });
    }
    Ok(out)
}

fn read_csv(root: &Path, labels: &Path) -> anyhow::Result<Vec<Parsed>> {
    let bytes = read_label_bytes(labels)?;
    let rows = csv_rows(labels, &bytes)?;
    let (cols, opt) = header_columns(
        labels,
        rows.first(),
        &["dis_img_path", "ref_img_path", "score"],
        &["dis_type", "ref_source"],
    )?;
    let mut out = Vec::new();
    for row in rows.iter().skip(1) {
        let dist = safe_relative(
            labels,
            row.line,
            field(labels, row, cols[0], "dis_img_path")?,
        )?;
        let rf = safe_relative(
            labels,
            row.line,
            field(labels, row, cols[1], "ref_img_path")?,
        )?;
        let score = parse_score(labels, row.line, field(labels, row, cols[2], "score")?)?;
        let dis_type = match opt[0] {
            Some(i) => row.fields.get(i).cloned().unwrap_or_default(),
            None => String::new(),
        };
        let source = opt[1]
            .and_then(|i| row.fields.get(i))
            .filter(|s| !s.is_empty())
            .cloned();
        out.push(Parsed {
            rec: PairRecord {
                ref_path: root.join(rf),
                dist_path: root.join(dist),
                score,
                dis_type,
                line: row.line,
                source,
            },
            file: labels.to_path_buf(),
        });
    }
    Ok(out)
}

/// Distinct reference images, sorted.
pub fn reference_set(pairs: &[PairRecord]) -> BTreeSet<PathBuf> {
    pairs.iter().map(|p| p.ref_path.clone()).collect()
}
