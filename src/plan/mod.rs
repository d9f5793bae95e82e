//! Plan files: one scoring pass of a model as data, for runtimes that have WebGPU but not
//! this engine (the browser module web/asna.js replays them; `replay.rs` does so natively).
//! A plan is recorded from a trace of the engine itself (`record.rs`), so the network is
//! written down once, in the engine, and never re-implemented.
//!
//! A plan is two files: `NAME.json` (the `Plan` below, format "asna-plan", version 1) and
//! the binary file it names in `weights`, whose byte ranges give the initial contents of the
//! buffers that hold the model's parameters, and the data of constant writes. Replaying it:
//!
//! 1. create every buffer in `buffers` (`size` bytes; usable as storage, uniform, copy source
//!    and destination), filling those with `init` from that range of the weights file;
//! 2. compile every pipeline: the WGSL file `shaders[shader]` (f32 storage), entry point
//!    `entry`, override `constants`; binding 0 is a uniform block of `param_slot` bytes, and
//!    binding i + 1 is `bindings[i]`: "read" (read-only storage), "read_write" (storage), or
//!    "uniform_window" (a uniform binding of 65536 bytes);
//! 3. per pass: run `commands` in order. `dispatch`: set the pipeline, bind its `params`
//!    (little-endian u32 words, zero-padded to `param_slot` bytes) at binding 0 and each
//!    `[buffer, offset, size]` of `bind` (size null: to the buffer's end) at 1.., dispatch
//!    `groups` workgroups. `copy` and `clear` as named. `write`: write `data` (a range of the
//!    weights file) or the bytes of input `input` at offset 0 of `buffer`, after all the work
//!    before it;
//! 4. read every output: `bytes` bytes at offset 0 of its buffer.
//!
//! Inputs and outputs say their layout in `layout`. A scoring plan has one input, "pixels"
//! (`batch` reference crops then `batch` distorted crops, `window` x `window` RGB u8, rows top
//! to bottom), and two outputs: "score" (`batch` f32 standardised scores; the label scale is
//! `score * scale.std + scale.mean`, negated first when `scale.higher_is_better` is false) and
//! "feature_diff" (f32 [batch, window, window, C]: the degradation map is its channel mean).

pub mod record;
pub mod replay;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const FORMAT: &str = "asna-plan";
pub const VERSION: u32 = 1;

/// Largest plan file read (the JSON text).
pub const MAX_PLAN_BYTES: u64 = 64 << 20;
/// Largest weights file read.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;
/// Largest buffer a plan may declare, and all of them together.
pub const MAX_BUFFER_BYTES: u64 = 4 << 30;
pub const MAX_TOTAL_BYTES: u64 = 16 << 30;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub version: u32,
    /// Where the model came from (a file name or "embedded default model").
    pub model: String,
    /// The convolution kernels it was recorded with: "gpu" or "cpu" (their families'
    /// names in `families`).
    pub kernels: String,
    pub families: Vec<String>,
    /// Side of the square window the model sees, and pairs per pass.
    pub window: u32,
    pub batch: u32,
    pub scale: Scale,
    /// Bytes of the parameter block bound at binding 0 of every dispatch.
    pub param_slot: u32,
    /// The binary file beside this one, and its size.
    pub weights: String,
    pub weights_bytes: u64,
    /// WGSL files, by name (in the directory `shaders/` beside the plan).
    pub shaders: Vec<String>,
    pub pipelines: Vec<Pipeline>,
    pub buffers: Vec<Buffer>,
    pub commands: Vec<Command>,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

/// The label scale of the model's standardised output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub mean: f64,
    pub std: f64,
    pub higher_is_better: bool,
}

impl Scale {
    pub fn from_standard(&self, z: f64) -> f64 {
        let z = if self.higher_is_better { z } else { -z };
        z * self.std + self.mean
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    Read,
    ReadWrite,
    UniformWindow,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Index into `shaders`.
    pub shader: usize,
    pub entry: String,
    pub constants: BTreeMap<String, f64>,
    pub bindings: Vec<Binding>,
}

/// One binding of a dispatch: [buffer, offset, size or null (to the buffer's end)].
pub type Bind = (usize, u64, Option<u64>);

/// A byte range of the weights file: [offset, length].
pub type Range = [u64; 2];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Buffer {
    pub size: u64,
    /// Initial contents (a range of the weights file); None: undefined until written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Range>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    Dispatch {
        pipeline: usize,
        params: Vec<u32>,
        /// Bindings 1.. in order.
        bind: Vec<Bind>,
        groups: [u32; 3],
    },
    Copy {
        src: usize,
        src_offset: u64,
        dst: usize,
        dst_offset: u64,
        size: u64,
    },
    Clear {
        buffer: usize,
        size: u64,
    },
    Write {
        buffer: usize,
        /// Constant bytes: a range of the weights file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Range>,
        /// Or the bytes of this input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
    },
}

/// An input or output: its name, buffer, size and layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub buffer: usize,
    pub bytes: u64,
    pub layout: String,
    pub shape: Vec<usize>,
}

impl Plan {
    /// Parses and checks a plan's JSON text; `source` names it in errors.
    pub fn from_json(text: &[u8], source: &str) -> Result<Plan> {
        // The header first, so that another format or version gets its own message.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        let header: Header = serde_json::from_slice(text)
            .map_err(|e| anyhow!("{source}: not a plan file (invalid JSON: {e})"))?;
        if header.format.as_deref() != Some(FORMAT) {
            bail!("{source}: not a plan file (format is not \"{FORMAT}\")");
        }
        if header.version != Some(VERSION) {
            bail!(
                "{source}: plan version {:?}; this build reads version {VERSION}",
                header.version
            );
        }
        let plan: Plan =
            serde_json::from_slice(text).map_err(|e| anyhow!("{source}: malformed plan: {e}"))?;
        plan.check().map_err(|e| anyhow!("{source}: {e}"))?;
        Ok(plan)
    }

    /// Reads a plan file (bounded in size).
    pub fn read(path: &Path) -> Result<Plan> {
        let text = crate::files::read_bounded(path, MAX_PLAN_BYTES, "plan file")?;
        Plan::from_json(&text, &path.display().to_string())
    }

    /// Reads the weights file a plan names, beside `plan_path`, and checks its size.
    pub fn read_weights(&self, plan_path: &Path) -> Result<Vec<u8>> {
        let path = plan_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.weights);
        let bytes = crate::files::read_bounded(&path, MAX_WEIGHTS_BYTES, "weights file")?;
        if bytes.len() as u64 != self.weights_bytes {
            bail!(
                "{}: {} bytes, but the plan expects {}",
                path.display(),
                bytes.len(),
                self.weights_bytes
            );
        }
        Ok(bytes)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a plan serialises")
    }

    pub fn input(&self, name: &str) -> Option<&Port> {
        self.inputs.iter().find(|p| p.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&Port> {
        self.outputs.iter().find(|p| p.name == name)
    }

    /// Every index, range and size is within bounds; one line on the first that is not.
    pub fn check(&self) -> Result<()> {
        if self.param_slot == 0 || self.param_slot % 4 != 0 || self.param_slot > 65536 {
            bail!(
                "param_slot {} is not a multiple of 4 in 4..65536",
                self.param_slot
            );
        }
        if self.weights.contains(['/', '\\']) || self.weights.starts_with('.') {
            bail!("weights \"{}\" must be a plain file name", self.weights);
        }
        for s in &self.shaders {
            if s.contains(['/', '\\']) || s.starts_with('.') || !s.ends_with(".wgsl") {
                bail!("shader \"{s}\" must be a plain .wgsl file name");
            }
        }
        let range = |r: &Range, what: &str| -> Result<()> {
            match r[0].checked_add(r[1]) {
                Some(end) if end <= self.weights_bytes => Ok(()),
                _ => bail!(
                    "{what}: range {:?} lies outside the weights file ({} bytes)",
                    r,
                    self.weights_bytes
                ),
            }
        };
        let mut total = 0u64;
        for (i, b) in self.buffers.iter().enumerate() {
            if b.size == 0 || b.size % 4 != 0 || b.size > MAX_BUFFER_BYTES {
                bail!(
                    "buffer {i}: size {} is not a multiple of 4 in 4..{MAX_BUFFER_BYTES}",
                    b.size
                );
            }
            total += b.size;
            if total > MAX_TOTAL_BYTES {
                bail!("buffers declare more than {MAX_TOTAL_BYTES} bytes in all");
            }
            if let Some(r) = &b.init {
                range(r, &format!("buffer {i}"))?;
                if r[1] > b.size {
                    bail!(
                        "buffer {i}: {} initial bytes exceed its size {}",
                        r[1],
                        b.size
                    );
                }
            }
        }
        let buffer = |i: usize, what: &str| -> Result<u64> {
            self.buffers
                .get(i)
                .map(|b| b.size)
                .ok_or_else(|| anyhow!("{what}: no buffer {i}"))
        };
        let within = |i: usize, offset: u64, size: u64, what: &str| -> Result<()> {
            let len = buffer(i, what)?;
            match offset.checked_add(size) {
                Some(end) if end <= len && offset % 4 == 0 && size % 4 == 0 => Ok(()),
                _ => bail!("{what}: bytes {offset}..+{size} do not fit buffer {i} ({len} bytes)"),
            }
        };
        for (i, p) in self.pipelines.iter().enumerate() {
            if p.shader >= self.shaders.len() {
                bail!("pipeline {i}: no shader {}", p.shader);
            }
        }
        for (i, c) in self.commands.iter().enumerate() {
            let what = format!("command {i}");
            match c {
                Command::Dispatch {
                    pipeline,
                    params,
                    bind,
                    groups: _,
                } => {
                    let p = self
                        .pipelines
                        .get(*pipeline)
                        .ok_or_else(|| anyhow!("{what}: no pipeline {pipeline}"))?;
                    if params.len() * 4 > self.param_slot as usize {
                        bail!("{what}: parameter block larger than param_slot");
                    }
                    if bind.len() != p.bindings.len() {
                        bail!(
                            "{what}: {} bindings for a pipeline with {}",
                            bind.len(),
                            p.bindings.len()
                        );
                    }
                    for &(b, offset, size) in bind {
                        let len = buffer(b, &what)?;
                        let size = size.unwrap_or(len.saturating_sub(offset));
                        within(b, offset, size, &what)?;
                    }
                }
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    within(*src, *src_offset, *size, &what)?;
                    within(*dst, *dst_offset, *size, &what)?;
                }
                Command::Clear { buffer: b, size } => within(*b, 0, *size, &what)?,
                Command::Write {
                    buffer: b,
                    data,
                    input,
                } => match (data, input) {
                    (Some(r), None) => {
                        range(r, &what)?;
                        within(*b, 0, r[1], &what)?;
                    }
                    (None, Some(name)) => {
                        let port = self
                            .input(name)
                            .ok_or_else(|| anyhow!("{what}: no input \"{name}\""))?;
                        within(*b, 0, port.bytes, &what)?;
                    }
                    _ => bail!("{what}: a write names either data or an input"),
                },
            }
        }
        for p in self.inputs.iter().chain(&self.outputs) {
            within(p.buffer, 0, p.bytes, &format!("port \"{}\"", p.name))?;
        }
        Ok(())
    }
}
