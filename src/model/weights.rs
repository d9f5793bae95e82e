//! Safetensors files: reading (a header and raw arrays; loading never executes code) with
//! one-line errors naming the file, and serialising tensors to bytes; callers write those bytes
//! with [`crate::files::write_atomic`].

use anyhow::{anyhow, bail, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The largest weights file asna reads: an ASNA model is a few megabytes, so a file this large
/// is not one, and reading it whole would only fill memory.
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 1 << 30;

/// The bytes of the weights file `path`, a regular file of at most `MAX_WEIGHTS_FILE_BYTES`.
pub fn read_weights_file(path: &Path) -> Result<Vec<u8>> {
    let data = crate::files::read_bounded(path, MAX_WEIGHTS_FILE_BYTES, "a .safetensors file")?;
    if data.is_empty() {
        bail!(
            "{}: empty file, expected a .safetensors file",
            path.display()
        );
    }
    Ok(data)
}

/// What a safetensors header declares: metadata, and each tensor's type and shape.
#[derive(Default, Debug)]
pub struct TensorHeader {
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, (Dtype, Vec<usize>)>,
}

/// The tensors of one file, as f32 (floats of any width) or u8, with the file's metadata.
#[derive(Default, Debug)]
pub struct TensorFile {
    pub floats: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub bytes: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    pub fn parse(data: &[u8], source: &str) -> Result<TensorFile> {
        Self::parse_selected(data, source, |_| true)
    }

    /// The file's metadata and the name, type and shape of each tensor, from its header alone:
    /// nothing is decoded, so a file can be judged before its tensors cost memory.
    pub fn header(data: &[u8], source: &str) -> Result<TensorHeader> {
        // deserialize checks that every tensor's byte range lies inside the file.
        let st = SafeTensors::deserialize(data)
            .map_err(|e| anyhow!("{source}: not a valid safetensors file ({e})"))?;
        let (_, meta) = SafeTensors::read_metadata(data)
            .map_err(|e| anyhow!("{source}: bad safetensors header ({e})"))?;
        Ok(TensorHeader {
            metadata: meta
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            tensors: st
                .tensors()
                .into_iter()
                .map(|(name, view)| (name, (view.dtype(), view.shape().to_vec())))
                .collect(),
        })
    }

    /// `parse`, decoding only the tensors `wanted` names.
    pub fn parse_selected(
        data: &[u8],
        source: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<TensorFile> {
        let st = SafeTensors::deserialize(data)
            .map_err(|e| anyhow!("{source}: not a valid safetensors file ({e})"))?;
        let mut out = TensorFile {
            metadata: Self::header(data, source)?.metadata,
            ..Default::default()
        };
        for (name, view) in st.tensors() {
            if !wanted(&name) {
                continue;
            }
            let shape = view.shape().to_vec();
            let raw = view.data();
            let floats: Option<Vec<f32>> = match view.dtype() {
                Dtype::F32 => Some(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                Dtype::F64 => Some(
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                        .collect(),
                ),
                Dtype::F16 => Some(
                    raw.chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                Dtype::BF16 => Some(
                    raw.chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                Dtype::U8 => {
                    out.bytes
                        .insert(name.clone(), (shape.clone(), raw.to_vec()));
                    None
                }
                other => bail!("{source}: tensor \"{name}\" has unsupported type {other:?}"),
            };
            if let Some(v) = floats {
                out.floats.insert(name, (shape, v));
            }
        }
        Ok(out)
    }

    pub fn read(path: &Path) -> Result<TensorFile> {
        let data = read_weights_file(path)?;
        TensorFile::parse(&data, &path.display().to_string())
    }

    pub fn float(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.floats.get(name).cloned()
    }
}

/// Serialises f32 tensors with metadata.
pub fn serialize(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                s.clone(),
                d.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, d)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), d)?,
            ))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    Ok(safetensors::serialize(views, &Some(meta))?)
}
