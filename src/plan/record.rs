//! Recording scoring plans: one traced forward pass of the engine (`predict` with the feature
//! difference tap, as `asna score` and `--map` run it) becomes a `Plan`.

use super::{Binding, Buffer, Command, Plan, Port, Range, Scale, FORMAT, VERSION};
use crate::data::Direction;
use crate::gpu::recorder::PARAM_SLOT;
use crate::gpu::{Access, DType, Gpu, Trace, TracedCommand};
use crate::model::asna::{predict, Taps, SIZE};
use crate::model::checkpoint::LoadedModel;
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;

/// Which adapters a plan's convolution kernels are chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernels {
    /// The kernels a GPU runs (discrete or integrated).
    Gpu,
    /// The kernels a CPU driver runs (SwiftShader, lavapipe, WARP).
    Cpu,
}

impl Kernels {
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Gpu => "gpu",
            Kernels::Cpu => "cpu",
        }
    }

    fn device_type(self) -> wgpu::DeviceType {
        match self {
            Kernels::Gpu => wgpu::DeviceType::DiscreteGpu,
            Kernels::Cpu => wgpu::DeviceType::Cpu,
        }
    }
}

/// The bytes of a plan's weights file, built up as plans are added: each buffer that existed
/// before a trace (the model's parameters) is read once and shared by every plan naming it.
#[derive(Default)]
pub struct WeightsFile {
    pub bytes: Vec<u8>,
    placed: HashMap<wgpu::Buffer, Range>,
}

impl WeightsFile {
    fn append(&mut self, data: &[u8]) -> Range {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        // Ranges start at multiples of 4, as writes need.
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        [offset, data.len() as u64]
    }
}

/// Pixels that no constant of the model repeats, so that the input's write is the only write
/// of these bytes in the trace.
fn marker_pixels(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Records one scoring pass of `batch` pairs of `model` (f32) with the kernels `kernels`
/// choose, as a plan whose constant data goes into `weights` (named `weights_name`).
pub fn record_scoring(
    gpu: &Gpu,
    model: &LoadedModel,
    batch: usize,
    kernels: Kernels,
    weights: &mut WeightsFile,
    weights_name: &str,
) -> Result<Plan> {
    if model.store.weight_dtype() != DType::F32 {
        bail!("plans are recorded from f32 weights");
    }
    let pixels = marker_pixels(2 * batch * SIZE * SIZE * 3);
    let (ref_px, dist_px) = pixels.split_at(batch * SIZE * SIZE * 3);
    // A plan runs on other adapters of its kind: their kernels, untuned, without the
    // subgroup variants (not every such adapter has subgroups 8 wide).
    let (previous, tuned, shared) = {
        let mut policy = gpu.kernels.borrow_mut();
        (
            policy.choose_as(kernels.device_type()),
            policy.set_use_tuned(false),
            policy.set_shared_loads(false),
        )
    };
    gpu.kernels.borrow_mut().start_noting_use();
    gpu.begin_trace();
    let mut taps = Taps::default();
    let score = predict(gpu, &model.store, ref_px, dist_px, batch, Some(&mut taps));
    let trace = gpu.end_trace();
    let families = {
        let mut policy = gpu.kernels.borrow_mut();
        let used: Vec<&str> = policy
            .take_use()
            .values()
            .flatten()
            .map(|cfg| cfg.family.name())
            .collect();
        policy.choose_as(previous);
        policy.set_use_tuned(tuned);
        policy.set_shared_loads(shared);
        // In the order of FAMILIES.
        crate::ops::conv::FAMILIES
            .iter()
            .map(|f| f.name().to_string())
            .filter(|f| used.contains(&f.as_str()))
            .collect::<Vec<_>>()
    };
    let diff = taps
        .feature_diff
        .ok_or_else(|| anyhow!("the forward pass gave no feature difference"))?;
    if let Some(problem) = &trace.problem {
        bail!("the scoring pass cannot be recorded as a plan: {problem}");
    }
    let output = |name: &str, t: &crate::gpu::Tensor, layout: &str| -> Result<Port> {
        Ok(Port {
            name: name.into(),
            buffer: trace
                .index_of(t.raw())
                .ok_or_else(|| anyhow!("output {name} was not written by the pass"))?,
            bytes: t.bytes(),
            layout: layout.into(),
            shape: t.shape.clone(),
        })
    };
    let outputs = vec![
        output("score", &score, "f32 standardised scores, one per pair")?,
        output(
            "feature_diff",
            &diff,
            "f32 NHWC |features(reference) - features(distorted)| of the first encoder scale",
        )?,
    ];
    let mut plan = from_trace(gpu, &trace, &pixels, weights, weights_name)?;
    let scaler = &model.scaler;
    plan.model = model.source.clone();
    plan.kernels = kernels.name().into();
    plan.families = families;
    plan.window = SIZE as u32;
    plan.batch = batch as u32;
    plan.scale = Scale {
        mean: scaler.mean,
        std: scaler.std,
        higher_is_better: scaler.direction == Direction::HigherIsBetter,
    };
    plan.outputs = outputs;
    plan.weights_bytes = weights.bytes.len() as u64;
    plan.check()
        .map_err(|e| anyhow!("recorded plan is inconsistent: {e}"))?;
    Ok(plan)
}

/// The plan of a trace whose only input is the write of `pixels`.
fn from_trace(
    gpu: &Gpu,
    trace: &Trace,
    pixels: &[u8],
    weights: &mut WeightsFile,
    weights_name: &str,
) -> Result<Plan> {
    let mut buffers = Vec::with_capacity(trace.buffers.len());
    for b in &trace.buffers {
        let init = if b.scratch {
            None
        } else {
            let range = match weights.placed.get(&b.buffer) {
                Some(r) => *r,
                None => {
                    let data = gpu.read_buffer(&b.buffer, b.size)?;
                    let r = weights.append(&data);
                    weights.placed.insert(b.buffer.clone(), r);
                    r
                }
            };
            Some(range)
        };
        buffers.push(Buffer { size: b.size, init });
    }
    let mut shaders: Vec<String> = Vec::new();
    let mut pipelines = Vec::with_capacity(trace.pipelines.len());
    for p in &trace.pipelines {
        if p.dtype != DType::F32 {
            bail!("plans hold f32 pipelines only ({} is not)", p.describe());
        }
        let shader = match shaders.iter().position(|s| s == p.file) {
            Some(i) => i,
            None => {
                shaders.push(p.file.to_string());
                shaders.len() - 1
            }
        };
        pipelines.push(super::Pipeline {
            shader,
            entry: p.entry.to_string(),
            constants: p
                .constants
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            bindings: p
                .bindings
                .iter()
                .map(|a| match a {
                    Access::Read => Binding::Read,
                    Access::ReadWrite => Binding::ReadWrite,
                    Access::UniformWindow => Binding::UniformWindow,
                })
                .collect(),
        });
    }
    let mut input = None;
    let mut commands = Vec::with_capacity(trace.commands.len());
    for c in &trace.commands {
        commands.push(match c {
            TracedCommand::Dispatch {
                pipeline,
                params,
                bindings,
                groups,
            } => Command::Dispatch {
                pipeline: *pipeline,
                params: params.clone(),
                bind: bindings.clone(),
                groups: *groups,
            },
            TracedCommand::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                size,
            } => Command::Copy {
                src: *src,
                src_offset: *src_offset,
                dst: *dst,
                dst_offset: *dst_offset,
                size: *size,
            },
            TracedCommand::Clear { buffer, size } => Command::Clear {
                buffer: *buffer,
                size: *size,
            },
            TracedCommand::Write { buffer, data } if data.as_slice() == pixels => {
                if input.replace(*buffer).is_some() {
                    bail!("the pass writes its input twice");
                }
                Command::Write {
                    buffer: *buffer,
                    data: None,
                    input: Some("pixels".into()),
                }
            }
            TracedCommand::Write { buffer, data } => Command::Write {
                buffer: *buffer,
                data: Some(weights.append(data)),
                input: None,
            },
        });
    }
    let input = input.ok_or_else(|| anyhow!("the pass never wrote its input pixels"))?;
    let n = pixels.len() / (SIZE * SIZE * 3);
    Ok(Plan {
        format: FORMAT.into(),
        version: VERSION,
        model: String::new(),
        kernels: String::new(),
        families: Vec::new(),
        window: SIZE as u32,
        batch: (n / 2) as u32,
        scale: Scale {
            mean: 0.0,
            std: 1.0,
            higher_is_better: true,
        },
        param_slot: PARAM_SLOT as u32,
        weights: weights_name.into(),
        weights_bytes: 0,
        shaders,
        pipelines,
        buffers,
        commands,
        inputs: vec![Port {
            name: "pixels".into(),
            buffer: input,
            bytes: pixels.len() as u64,
            layout: "u8 RGB: the reference crops, then the distorted crops, rows top to bottom"
                .into(),
            shape: vec![n, SIZE, SIZE, 3],
        }],
        outputs: Vec::new(),
    })
}

/// Sets every plan's `weights_bytes` once all of them are recorded into `weights`.
pub fn finish(plans: &mut [Plan], weights: &WeightsFile) {
    for p in plans {
        p.weights_bytes = weights.bytes.len() as u64;
    }
}
