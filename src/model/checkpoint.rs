//! Model files: safetensors with the parameter names and layouts of docs/MODEL.md, and
//! metadata that says what the model is (architecture, spec version) and how to read its
//! output (the label mean, standard deviation and direction of its training set). Training
//! checkpoints also carry the optimiser's state and the run's progress. Loading checks
//! everything and never runs code.

use super::asna::{self, ARCHITECTURE, SPEC_VERSION};
use super::params::{ParamStore, SpecList};
use super::weights::{read_weights_file, serialize, TensorFile};
use crate::data::{Direction, LabelScaler};
use crate::files::write_atomic;
use crate::gpu::Gpu;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The model embedded in the binary, used when no `--weights` is given.
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../../weights/asna-default.safetensors");
pub const DEFAULT_MODEL_NAME: &str = "embedded default model (weights/asna-default.safetensors)";

/// A model loaded for scoring. Cloning shares its tensors' buffers.
#[derive(Clone)]
pub struct LoadedModel {
    pub store: ParamStore,
    pub scaler: LabelScaler,
    pub metadata: BTreeMap<String, String>,
    pub source: String,
    /// A digest of the model file's bytes (`files::digest`): what a resumed scoring run checks
    /// it is scoring with.
    pub digest: u64,
}

fn meta<'a>(m: &'a BTreeMap<String, String>, key: &str, source: &str) -> Result<&'a str> {
    m.get(key)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{source}: metadata lacks \"{key}\" (not an asna model file?)"))
}

/// Checks a file's metadata names the architecture we expect, at a spec version we read.
/// The float types a model's tensors may be stored in (read as f32).
const FLOAT_TYPES: [safetensors::Dtype; 4] = [
    safetensors::Dtype::F32,
    safetensors::Dtype::F64,
    safetensors::Dtype::F16,
    safetensors::Dtype::BF16,
];

pub fn check_architecture(file: &TensorFile, want: &str, source: &str) -> Result<()> {
    check_architecture_metadata(&file.metadata, want, source)
}

fn check_architecture_metadata(
    metadata: &BTreeMap<String, String>,
    want: &str,
    source: &str,
) -> Result<()> {
    let file_metadata = metadata;
    let arch = meta(file_metadata, "architecture", source)?;
    if arch != want {
        bail!("{source}: holds a model of architecture \"{arch}\", expected \"{want}\"");
    }
    let version = meta(file_metadata, "spec_version", source)?;
    if version != SPEC_VERSION {
        bail!("{source}: unknown spec version \"{version}\" (this asna reads \"{SPEC_VERSION}\")");
    }
    Ok(())
}

pub fn load_store(
    gpu: &Gpu,
    file: &TensorFile,
    specs: &SpecList,
    source: &str,
) -> Result<ParamStore> {
    ParamStore::from_file_tensors(gpu, specs, |name| file.float(name), source)
}

/// A model from the bytes of its file. Everything the header says is checked first
/// (architecture, spec version, label scale, every tensor's name, type and shape); only then
/// are the model's tensors decoded, and no others (a checkpoint's optimiser state is skipped).
pub fn parse_model(gpu: &Gpu, bytes: &[u8], source: &str) -> Result<LoadedModel> {
    let header = TensorFile::header(bytes, source)?;
    check_architecture_metadata(&header.metadata, ARCHITECTURE, source)?;
    let scaler = scaler_from_metadata(&header.metadata, source)?;
    let specs = asna::specs();
    for spec in &specs.0 {
        match header.tensors.get(&spec.name) {
            None => bail!("{source}: missing tensor \"{}\"", spec.name),
            Some((_, shape)) if *shape != spec.file_shape => bail!(
                "{source}: tensor \"{}\" has shape {:?}, expected {:?}",
                spec.name,
                shape,
                spec.file_shape
            ),
            Some((dtype, _)) if !FLOAT_TYPES.contains(dtype) => bail!(
                "{source}: tensor \"{}\" has type {dtype:?}, expected a float type",
                spec.name
            ),
            Some(_) => {}
        }
    }
    let names: std::collections::BTreeSet<&str> = specs.0.iter().map(|s| s.name.as_str()).collect();
    let file = TensorFile::parse_selected(bytes, source, |n| names.contains(n))?;
    let store = load_store(gpu, &file, &specs, source)?;
    Ok(LoadedModel {
        store,
        scaler,
        metadata: file.metadata,
        source: source.to_string(),
        digest: crate::files::digest(bytes),
    })
}

/// The largest label mean or standard deviation a model may declare. Human opinion scores
/// are at most a few thousand (PIPAL's Elo scores about 1500); past this, scores lose their
/// meaning long before they overflow.
pub const MAX_LABEL_SCALE: f64 = 1e12;

/// The label scale a model's outputs are read on: mean, standard deviation and direction of
/// its training labels.
pub fn scaler_from_metadata(m: &BTreeMap<String, String>, source: &str) -> Result<LabelScaler> {
    let num = |k: &str| -> Result<f64> {
        let v = meta(m, k, source)?;
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| anyhow!("{source}: metadata \"{k}\" = \"{v}\" is not a number"))
    };
    let direction: Direction = meta(m, "label_direction", source)?.parse().map_err(|_| {
        anyhow!("{source}: metadata \"label_direction\" must be \"higher\" or \"lower\"")
    })?;
    let std = num("label_std")?;
    if std <= 0.0 {
        bail!("{source}: metadata \"label_std\" must be positive");
    }
    let mean = num("label_mean")?;
    if mean.abs() > MAX_LABEL_SCALE || std > MAX_LABEL_SCALE {
        bail!(
            "{source}: metadata label scale (mean {mean:e}, std {std:e}) is implausible: \
             scores on it would not be ordinary numbers (at most {MAX_LABEL_SCALE:e} accepted)"
        );
    }
    Ok(LabelScaler {
        mean,
        std,
        direction,
    })
}

/// A model from a file, or the embedded default when `path` is None.
pub fn load_model(gpu: &Gpu, path: Option<&Path>) -> Result<LoadedModel> {
    match path {
        None => parse_model(gpu, DEFAULT_MODEL, DEFAULT_MODEL_NAME),
        Some(p) => {
            let source = p.display().to_string();
            if p.is_dir() {
                // A training run directory: take its best checkpoint.
                let best = p.join("best.safetensors");
                if best.is_file() {
                    return load_model(gpu, Some(&best));
                }
                bail!("{source}: is a directory without best.safetensors");
            }
            let bytes = read_weights_file(p)?;
            parse_model(gpu, &bytes, &source)
        }
    }
}

/// The models named by `--weights` (an ensemble when several), or the embedded default when
/// none is named.
pub fn load_models(gpu: &Gpu, weights: &[std::path::PathBuf]) -> Result<Vec<LoadedModel>> {
    if weights.is_empty() {
        return Ok(vec![load_model(gpu, None)?]);
    }
    weights.iter().map(|w| load_model(gpu, Some(w))).collect()
}

/// The metadata every ASNA model file carries.
pub fn model_metadata(scaler: &LabelScaler) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("architecture".into(), ARCHITECTURE.into());
    m.insert("spec_version".into(), SPEC_VERSION.into());
    m.insert(
        "format".into(),
        "asna model; tensors in the spec's layouts (conv [out,in,kh,kw], dense [out,in])".into(),
    );
    m.insert("label_mean".into(), format!("{}", scaler.mean));
    m.insert("label_std".into(), format!("{}", scaler.std));
    m.insert("label_direction".into(), scaler.direction.as_str().into());
    m.insert("asna_version".into(), env!("CARGO_PKG_VERSION").into());
    m
}

/// Named tensors in file layout: (name, shape, values).
pub type FileTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// State saved beside the parameters so that a run resumes exactly (the optimiser's moments):
/// extra tensors and metadata entries. The optimiser implements it, so that model files need
/// not know about optimisers.
pub trait ResumeState {
    fn file_tensors(&self, gpu: &Gpu, store: &ParamStore) -> Result<FileTensors>;
    fn metadata(&self) -> Result<BTreeMap<String, String>>;
}

/// Writes parameters (and the state a run resumes from) with metadata, atomically.
pub fn save(
    gpu: &Gpu,
    path: &Path,
    store: &ParamStore,
    state: Option<&dyn ResumeState>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut tensors = store.to_file_tensors(gpu)?;
    let mut metadata = metadata.clone();
    if let Some(state) = state {
        metadata.extend(state.metadata()?);
        tensors.extend(state.file_tensors(gpu, store)?);
    }
    for (_, _, data) in &tensors {
        if data.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: refusing to save parameters holding NaN or infinity",
                path.display()
            );
        }
    }
    let bytes = serialize(&tensors, &metadata)?;
    write_atomic(path, &bytes)
}
