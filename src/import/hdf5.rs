//! The few things a Keras HDF5 model file is read for: string attributes (the JSON
//! `model_config`, the `layer_names` and `weight_names` lists) and float datasets with their
//! shapes. Built on `hdf5-pure`, a pure-Rust reader, so no HDF5 C library is needed. Errors
//! name the file and the object.

use crate::files::read_bounded;
use anyhow::{anyhow, bail, Result};
use hdf5_pure::{AttrValue, DType, Dataset, File, Layout};
use std::path::Path;

pub struct Hdf5File {
    file: File,
    source: String,
}

/// A float dataset whose type, storage and shape have been read, and its data not yet.
pub struct FloatDataset<'f> {
    file: &'f Hdf5File,
    dataset: Dataset,
    path: String,
    /// The declared shape.
    pub shape: Vec<u64>,
}

/// The largest Keras model file read: the ASNA model is a few megabytes even with its
/// optimiser's state, so a file this large is not one, and it would be read whole.
pub const MAX_MODEL_FILE_BYTES: u64 = 1 << 30;

/// HDF5 filters that hdf5-pure decodes as built here: shuffle, fletcher32, scale-offset, LZF.
/// Deflate (gzip) is left out of the build, and szip, n-bit and the plugin compressors are not
/// implemented.
const READABLE_FILTERS: [u16; 4] = [2, 3, 6, 32000];

impl Hdf5File {
    pub fn open(path: &Path) -> Result<Hdf5File> {
        let source = path.display().to_string();
        let bytes = read_bounded(path, MAX_MODEL_FILE_BYTES, "a Keras .hdf5 model file")?;
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

    /// The floating-point dataset (f32 or f64) at `path`, with its declared shape; its type and
    /// storage are checked here, and nothing of its data is read.
    pub fn float_dataset(&self, path: &str) -> Result<FloatDataset<'_>> {
        let src = &self.source;
        let dataset = self
            .file
            .dataset(path)
            .map_err(|e| anyhow!("{src}: missing dataset \"{path}\" ({e})"))?;
        let dtype = dataset
            .dtype()
            .map_err(|e| anyhow!("{src}: dataset \"{path}\": unreadable type ({e})"))?;
        if !matches!(dtype, DType::F32 | DType::F64) {
            bail!(
                "{src}: dataset \"{path}\" holds {}, expected 32- or 64-bit floats",
                type_name(&dtype)
            );
        }
        if let Some(&filter) = dataset
            .filters()
            .iter()
            .find(|f| !READABLE_FILTERS.contains(f))
        {
            bail!(
                "{src}: dataset \"{path}\" is stored with {}, which is not supported (save the model without compression)",
                filter_name(filter)
            );
        }
        if matches!(dataset.layout(), Ok(Layout::Virtual)) {
            bail!("{src}: dataset \"{path}\" is a virtual dataset (its data lies in other files), which is not supported");
        }
        let shape = dataset
            .shape()
            .map_err(|e| anyhow!("{src}: dataset \"{path}\": unreadable shape ({e})"))?;
        Ok(FloatDataset {
            file: self,
            dataset,
            path: path.to_string(),
            shape,
        })
    }
}

impl FloatDataset<'_> {
    /// The values, as f32. Callers check `shape` first: it sizes what is read.
    pub fn read(&self) -> Result<Vec<f32>> {
        let (src, path) = (&self.file.source, &self.path);
        let file_size = self.file.file.file_size();
        if let Ok(Layout::Contiguous {
            address: Some(address),
            size,
        }) = self.dataset.layout()
        {
            if address.saturating_add(size) > file_size {
                bail!("{src}: dataset \"{path}\" declares {size} bytes at offset {address}, past the end of the file ({file_size} bytes)");
            }
        }
        let data = self.dataset.read_f32().map_err(|e| {
            anyhow!("{src}: dataset \"{path}\": unreadable data, truncated file? ({e})")
        })?;
        let declared = self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if declared != Some(data.len() as u64) {
            bail!(
                "{src}: dataset \"{path}\" holds {} values for shape {:?}",
                data.len(),
                self.shape
            );
        }
        Ok(data)
    }
}

/// An HDF5 type in words.
fn type_name(dtype: &DType) -> String {
    match dtype {
        DType::Other(dt) => match &**dt {
            hdf5_pure::Datatype::FloatingPoint { size, .. } => format!("{}-bit floats", size * 8),
            other => format!("values of type {other}"),
        },
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => {
            format!("integers ({dtype})")
        }
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
            format!("unsigned integers ({dtype})")
        }
        DType::String | DType::VariableLengthString => "strings".into(),
        other => format!("values of type {other}"),
    }
}

/// An HDF5 filter in words.
fn filter_name(id: u16) -> String {
    match id {
        1 => "gzip (deflate) compression".into(),
        4 => "szip compression".into(),
        5 => "n-bit packing".into(),
        307 => "bzip2 compression".into(),
        32001 => "Blosc compression".into(),
        32013 => "ZFP compression".into(),
        other => format!("HDF5 filter {other}"),
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
