//! The few things a Keras HDF5 model file is read for: string attributes (the JSON
//! `model_config`, the `layer_names` and `weight_names` lists) and float datasets with their
//! shapes. Built on `hdf5-pure`, a pure-Rust reader, so no HDF5 C library is needed. Errors
//! name the file and the object.

use anyhow::{anyhow, bail, Result};
use hdf5_pure::{AttrValue, DType, File};
use std::path::Path;

pub struct Hdf5File {
    file: File,
    source: String,
}

/// A float dataset, converted to f32, with its shape.
pub struct FloatArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Hdf5File {
    pub fn open(path: &Path) -> Result<Hdf5File> {
        let source = path.display().to_string();
        if path.is_dir() {
            bail!("{source}: is a directory, expected a Keras .hdf5 model file");
        }
        let bytes = std::fs::read(path).map_err(|e| anyhow!("{source}: cannot read ({e})"))?;
        if bytes.is_empty() {
            bail!("{source}: empty file, expected a Keras .hdf5 model file");
        }
        if !hdf5_pure::is_hdf5_bytes(&bytes) {
            bail!(
                "{source}: not an HDF5 file (no HDF5 signature), expected a Keras .hdf5 model file"
            );
        }
        let file = File::from_bytes(bytes)
            .map_err(|e| anyhow!("{source}: unreadable HDF5 file, truncated or damaged? ({e})"))?;
        // The superblock records where the file ends; a shorter file lost its tail.
        let sb = file.superblock();
        let declared = sb.base_address.get().saturating_add(sb.eof_address);
        if declared > file.file_size() {
            bail!(
                "{source}: truncated HDF5 file ({} bytes, its header says {declared})",
                file.file_size()
            );
        }
        Ok(Hdf5File { file, source })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn attr(&self, group: &str, name: &str) -> Result<Option<AttrValue>> {
        let attrs = if group.is_empty() {
            self.file.root().attrs()
        } else {
            self.file.group(group).and_then(|g| g.attrs())
        }
        .map_err(|e| {
            anyhow!(
                "{}: cannot read the attributes of {} ({e})",
                self.source,
                show(group)
            )
        })?;
        Ok(attrs.get(name).cloned())
    }

    /// A string attribute (fixed-length or variable-length); None when absent.
    pub fn string_attr(&self, group: &str, name: &str) -> Result<Option<String>> {
        match self.attr(group, name)? {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| {
                anyhow!(
                    "{}: attribute \"{name}\" of {} is not a string",
                    self.source,
                    show(group)
                )
            }),
        }
    }

    /// A list-of-strings attribute; an empty list may be stored with any element type.
    pub fn string_list_attr(&self, group: &str, name: &str) -> Result<Option<Vec<String>>> {
        match self.attr(group, name)? {
            None => Ok(None),
            Some(v) => match v.as_strings() {
                Some(list) => Ok(Some(list.to_vec())),
                None if is_empty_array(&v) => Ok(Some(Vec::new())),
                None => bail!(
                    "{}: attribute \"{name}\" of {} is not a list of strings",
                    self.source,
                    show(group)
                ),
            },
        }
    }

    pub fn has_group(&self, path: &str) -> bool {
        self.file.group(path).is_ok()
    }

    /// A floating-point dataset (f32 or f64), as f32.
    pub fn float_dataset(&self, path: &str) -> Result<FloatArray> {
        let src = &self.source;
        let ds = self
            .file
            .dataset(path)
            .map_err(|e| anyhow!("{src}: missing dataset \"{path}\" ({e})"))?;
        let dtype = ds
            .dtype()
            .map_err(|e| anyhow!("{src}: dataset \"{path}\": unreadable type ({e})"))?;
        if !matches!(dtype, DType::F32 | DType::F64) {
            bail!("{src}: dataset \"{path}\" holds {dtype:?}, expected floats");
        }
        let shape: Vec<usize> = ds
            .shape()
            .map_err(|e| anyhow!("{src}: dataset \"{path}\": unreadable shape ({e})"))?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        let data = ds.read_f32().map_err(|e| {
            anyhow!("{src}: dataset \"{path}\": unreadable data, truncated file? ({e})")
        })?;
        if data.len() != shape.iter().product::<usize>() {
            bail!(
                "{src}: dataset \"{path}\" holds {} values for shape {shape:?}",
                data.len()
            );
        }
        Ok(FloatArray { shape, data })
    }
}

fn show(group: &str) -> String {
    if group.is_empty() {
        "the root group".into()
    } else {
        format!("group \"{group}\"")
    }
}

fn is_empty_array(v: &AttrValue) -> bool {
    match v {
        AttrValue::F32Array(a) => a.is_empty(),
        AttrValue::F64Array(a) => a.is_empty(),
        AttrValue::I8Array(a) => a.is_empty(),
        AttrValue::I16Array(a) => a.is_empty(),
        AttrValue::I32Array(a) => a.is_empty(),
        AttrValue::I64Array(a) => a.is_empty(),
        AttrValue::U8Array(a) => a.is_empty(),
        AttrValue::U16Array(a) => a.is_empty(),
        AttrValue::U32Array(a) => a.is_empty(),
        AttrValue::U64Array(a) => a.is_empty(),
        _ => false,
    }
}
