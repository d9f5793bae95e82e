//! Model files: safetensors with the spec's parameter names and layouts, and metadata that
//! says what the model is (architecture, spec version) and how to read its output (the label
//! mean, standard deviation and direction of its training set). Training checkpoints also
//! carry Adam's moments and the run's state. Loading checks everything and never runs code.

use super::asna::{self, ARCHITECTURE, SPEC_VERSION};
use super::params::{to_file, ParamStore, SpecList};
use super::weights::{serialize, write_atomic, TensorFile};
use crate::data::{Direction, LabelScaler};
use crate::gpu::Gpu;
use crate::optim::Adam;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The model embedded in the binary, used when no `--weights` is given.
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../../weights/asna-default.safetensors");
pub const DEFAULT_MODEL_NAME: &str = "embedded default model (weights/asna-default.safetensors)";

pub struct LoadedModel {
    pub store: ParamStore,
    pub scaler: LabelScaler,
    pub metadata: BTreeMap<String, String>,
    pub source: String,
}

fn meta<'a>(m: &'a BTreeMap<String, String>, key: &str, source: &str) -> Result<&'a str> {
    m.get(key)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{source}: metadata lacks \"{key}\" (not an asna model file?)"))
}

/// Checks a file's metadata names the architecture we expect, at a spec version we read.
pub fn check_architecture(file: &TensorFile, want: &str, source: &str) -> Result<()> {
    let arch = meta(&file.metadata, "architecture", source)?;
    if arch != want {
        bail!("{source}: holds a model of architecture \"{arch}\", expected \"{want}\"");
    }
    let version = meta(&file.metadata, "spec_version", source)?;
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

pub fn parse_model(gpu: &Gpu, bytes: &[u8], source: &str) -> Result<LoadedModel> {
    let file = TensorFile::parse(bytes, source)?;
    check_architecture(&file, ARCHITECTURE, source)?;
    let store = load_store(gpu, &file, &asna::specs(), source)?;
    let scaler = scaler_from_metadata(&file.metadata, source)?;
    Ok(LoadedModel {
        store,
        scaler,
        metadata: file.metadata,
        source: source.to_string(),
    })
}

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
    Ok(LabelScaler {
        mean: num("label_mean")?,
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
            let bytes = std::fs::read(p).map_err(|e| anyhow!("{source}: cannot read ({e})"))?;
            if bytes.is_empty() {
                bail!("{source}: empty file, expected a .safetensors model");
            }
            parse_model(gpu, &bytes, &source)
        }
    }
}

/// The models of an ensemble from files (or run directories), or the embedded default alone
/// when `paths` is empty.
pub fn load_models(gpu: &Gpu, paths: &[std::path::PathBuf]) -> Result<Vec<LoadedModel>> {
    if paths.is_empty() {
        return Ok(vec![load_model(gpu, None)?]);
    }
    paths.iter().map(|p| load_model(gpu, Some(p))).collect()
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

/// Writes parameters (and Adam's state, for resuming) with metadata, atomically.
pub fn save(
    gpu: &Gpu,
    path: &Path,
    store: &ParamStore,
    adam: Option<&Adam>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut tensors = store.to_file_tensors(gpu)?;
    let mut metadata = metadata.clone();
    if let Some(adam) = adam {
        metadata.insert("adam_t".into(), adam.t.to_string());
        metadata.insert("adam".into(), serde_json::to_string(&adam.cfg)?);
        for spec in store.specs.iter().filter(|s| s.trainable) {
            if let (Some(m), Some(v)) = (adam.m.get(&spec.name), adam.v.get(&spec.name)) {
                tensors.push((
                    format!("adam.m.{}", spec.name),
                    spec.file_shape.clone(),
                    to_file(spec, &gpu.download(m)?),
                ));
                tensors.push((
                    format!("adam.v.{}", spec.name),
                    spec.file_shape.clone(),
                    to_file(spec, &gpu.download(v)?),
                ));
            }
        }
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

/// Adam's state from a checkpoint written by `save` (None when it holds none).
pub fn load_adam(
    gpu: &Gpu,
    file: &TensorFile,
    store: &ParamStore,
    source: &str,
) -> Result<Option<Adam>> {
    let Some(t) = file.metadata.get("adam_t") else {
        return Ok(None);
    };
    let t: u64 = t.parse().map_err(|_| anyhow!("{source}: bad adam_t"))?;
    let cfg = serde_json::from_str(
        file.metadata
            .get("adam")
            .ok_or_else(|| anyhow!("{source}: lacks adam settings"))?,
    )
    .map_err(|e| anyhow!("{source}: bad adam settings ({e})"))?;
    let mut adam = Adam::new(cfg);
    adam.t = t;
    for spec in store.specs.iter().filter(|s| s.trainable) {
        for (which, map) in [("m", &mut adam.m), ("v", &mut adam.v)] {
            let key = format!("adam.{which}.{}", spec.name);
            let (shape, data) = file
                .float(&key)
                .ok_or_else(|| anyhow!("{source}: missing tensor \"{key}\""))?;
            if shape != spec.file_shape {
                bail!(
                    "{source}: tensor \"{key}\" has shape {shape:?}, expected {:?}",
                    spec.file_shape
                );
            }
            map.insert(
                spec.name.clone(),
                gpu.upload(&spec.engine_shape(), &super::params::to_engine(spec, &data)),
            );
        }
    }
    Ok(Some(adam))
}
