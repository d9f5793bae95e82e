//! Proof by translation: every pipeline configuration the engine creates (shader, entry point,
//! override constants, element type) is translated by naga into the language of each wgpu
//! backend: SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL ES 3.10 (OpenGL ES, f32 only:
//! GL has no shader-f16). The SPIR-V is validated with `spirv-val`, the GLSL with
//! `glslangValidator`, and each entry point's workgroup size, workgroup memory and buffer
//! count are held to the limits every WebGPU adapter offers. docs/PORTABILITY.md says what
//! this proves and what it leaves open.
//!
//! The configurations are not listed by hand: the engine runs every path (scoring in f32 and
//! f16, shared references and the degradation map's taps, a training step with Adam and the
//! batch norm's running statistics, the sorter forward and backward, PSNR, SSIM, MS-SSIM and GMSD, the
//! public ops the model does not use, and each convolution family forced in turn) and the
//! pipeline cache reports what it created (`Gpu::created_pipelines`). To those are added the
//! launches of every candidate configuration of every convolution family for every product
//! width the model ran, which a tuning cache or `ASNA_CONV` may select on some adapter. Every
//! entry point of every embedded shader must be among them.

use asna::autograd::Tape;
use asna::data::Batch;
use asna::gpu::pipeline::{shader_checks, shader_source};
use asna::gpu::{Access, DType, Gpu, PipelineConfig};
use asna::model::asna::{predict, predict_shared, specs, BnContext, Bound, Taps};
use asna::model::checkpoint::load_model;
use asna::model::params::ParamStore;
use asna::model::sorter;
use asna::ops::conv::{self, parse_tune_key, ConvGeom, FAMILIES};
use asna::ops::{batchnorm, concat, eltwise, pool, quality, Act};
use asna::rng::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The model's input crop.
const SIZE: usize = 288;

fn pixels(rng: &mut Rng, n: usize, size: usize) -> Vec<u8> {
    (0..n * size * size * 3)
        .map(|_| rng.below(256) as u8)
        .collect()
}

fn uniform(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect()
}

/// Scoring as `asna score` runs it in `store`'s element type: a batch of pairs, pairs that
/// share a reference, and one pair with the degradation map's taps.
fn score(gpu: &Gpu, store: &ParamStore, rng: &mut Rng) {
    let (refs, dists) = (pixels(rng, 2, SIZE), pixels(rng, 2, SIZE));
    gpu.download(&predict(gpu, store, &refs, &dists, 2, None))
        .unwrap();
    let one_ref = &refs[..SIZE * SIZE * 3];
    gpu.download(&predict_shared(gpu, store, one_ref, &dists, &[0, 0], None))
        .unwrap();
    let mut taps = Taps::default();
    let one_dist = &dists[..SIZE * SIZE * 3];
    predict(gpu, store, one_ref, one_dist, 1, Some(&mut taps));
    gpu.download(&taps.feature_diff.expect("feature difference tap"))
        .unwrap();
}

/// One optimisation step of the model (forward in training mode, the loss with its Pearson
/// term, backward, Adam, the batch norm's running statistics) on two pairs. The sorter's
/// ranking term needs a batch of its length (16 pairs, slow on a CPU driver); `sorter_steps`
/// runs its kernels instead.
fn train(gpu: &Gpu, rng: &mut Rng) {
    let n = 2;
    let mut store = ParamStore::init(gpu, &specs(), 1);
    let mut adam = asna::optim::Adam::new(Default::default());
    let batch = Batch {
        ref_u8: pixels(rng, n, SIZE),
        dist_u8: pixels(rng, n, SIZE),
        targets: vec![1.0, -1.0],
        indices: (0..n).collect(),
        n,
        size: SIZE,
    };
    // An MSE weight below 1 brings in the Pearson term's gradient (`asna train --mse-weight`).
    let weights = asna::model::loss::LossWeights {
        mse: 0.5,
        rank: 0.0,
        ..Default::default()
    };
    asna::optim::train_step(
        gpu, &mut store, &mut adam, None, &weights, &batch, 1e-3, 0, false,
    )
    .unwrap()
    .expect("a finite loss");
}

/// The sorter as `asna train-sorter` trains it (training mode, mean absolute error, backward,
/// Adam) and as the model's loss uses it (frozen in evaluation mode, gradients flowing to its
/// input).
fn sorter_steps(gpu: &Gpu, rng: &mut Rng) {
    let rows = 4;
    let mut store = ParamStore::init(gpu, &sorter::specs(), 2);
    let input = uniform(rng, rows * sorter::LENGTH);
    let target = uniform(rng, rows * sorter::LENGTH);
    let shape = [rows, sorter::LENGTH];

    let mut tape = Tape::new(gpu);
    let params = Bound::new(&mut tape, &store, true);
    let v = tape.leaf(gpu.upload(&shape, &input), false);
    let t = tape.leaf(gpu.upload(&shape, &target), false);
    let mut bn = BnContext::train(&store);
    let out = sorter::forward(&mut tape, &params, &mut bn, &v);
    let mae = tape.mae(&out, &t);
    tape.backward(&mae);
    let mut grads = BTreeMap::new();
    for name in store.trainable_names() {
        if let Some(g) = tape.take_grad(params.var(&name)) {
            grads.insert(name, g);
        }
    }
    let updates = std::mem::take(&mut bn.updates);
    drop(tape);
    asna::optim::Adam::new(Default::default()).step(gpu, &store, &grads, 1e-3);
    for (name, t) in updates {
        store.set(&name, t);
    }

    let mut tape = Tape::new(gpu);
    let params = Bound::new(&mut tape, &store, false);
    let v = tape.leaf(gpu.upload(&shape, &input), true);
    let t = tape.leaf(gpu.upload(&shape, &target), false);
    let mut frozen = BnContext::eval(&store);
    let out = sorter::forward(&mut tape, &params, &mut frozen, &v);
    let mse = tape.mse(&out, &t);
    tape.backward(&mse);
    gpu.download(tape.grad(&v).expect("gradient at the sorter's input"))
        .unwrap();
}

/// PSNR, SSIM, MS-SSIM and GMSD, the baselines `asna eval` reports beside the model
/// (MS-SSIM at the smallest size it accepts).
fn baselines(gpu: &Gpu, rng: &mut Rng) {
    let (n, size) = (2, 32);
    let (a, b) = (pixels(rng, n, size), pixels(rng, n, size));
    quality::psnr(gpu, &a, &b, n, size, size).unwrap();
    quality::ssim(gpu, &a, &b, n, size, size).unwrap();
    quality::gmsd(gpu, &a, &b, n, size, size).unwrap();
    let side = quality::MS_SSIM_MIN_SIDE;
    let (a, b) = (pixels(rng, 1, side), pixels(rng, 1, side));
    quality::ms_ssim(gpu, &a, &b, 1, side, side).unwrap();
}

/// Library ops the model's paths do not use: a separate activation (every function, f32 and
/// f16), a fill from a scalar, the upsampling the scoring pass fuses, in f16, and the scalar
/// kernels of max pooling and the fused decoder input (the model's channel counts, all
/// multiples of 4, take the vec4 ones), in f32 and f16.
fn other_ops(gpu: &Gpu, rng: &mut Rng) {
    let shape = [2, 4, 4, 8];
    let x = gpu.upload(&shape, &uniform(rng, shape.iter().product()));
    let x16 = gpu.convert(&x, DType::F16).unwrap();
    for act in [
        Act::None,
        Act::LeakyRelu,
        Act::Relu,
        Act::Sigmoid,
        Act::Tanh,
    ] {
        eltwise::activation(gpu, &x, act);
        eltwise::activation(gpu, &x16, act);
    }
    let scalar = gpu.upload(&[1], &[0.5]);
    eltwise::fill_from_scalar(gpu, &shape, 2.0, &scalar);
    // Batch norm on a channel count that is not a multiple of 4 (the model's are), which
    // takes the one-element-an-invocation kernels.
    let x3 = gpu.upload(&[2, 4, 4, 3], &uniform(rng, 96));
    let stats = batchnorm::batch_stats(gpu, &x3);
    let (gamma, beta) = (gpu.upload(&[3], &[1.0; 3]), gpu.upload(&[3], &[0.0; 3]));
    batchnorm::normalize(gpu, &x3, &stats.mean, &stats.var, &gamma, &beta);
    let (dx, _, _) = batchnorm::backward(gpu, &x3, &x3, &stats, &gamma);
    gpu.download(&dx).unwrap();
    gpu.download(&pool::upsample(gpu, &x16)).unwrap();
    let low = gpu.upload(&[1, 2, 2, 3], &uniform(rng, 12));
    let feats = gpu.upload(&[2, 4, 4, 5], &uniform(rng, 160));
    for dtype in [DType::F32, DType::F16] {
        let (low, feats) = (
            gpu.convert(&low, dtype).unwrap(),
            gpu.convert(&feats, dtype).unwrap(),
        );
        gpu.download(&pool::maxpool(gpu, &feats)).unwrap();
        gpu.download(&concat::upsample_absdiff_concat(gpu, &low, &feats))
            .unwrap();
    }
}

/// Each convolution family forced in turn: forward (f32, and f16 where the adapter has it),
/// the input and the weight gradients, on a strided 3x3 convolution and a dense layer.
fn forced_families(gpu: &Gpu, rng: &mut Rng) {
    for &family in FAMILIES {
        gpu.kernels.borrow_mut().force_family(Some(family));
        for (x_shape, w_shape, stride) in [
            ([2, 9, 9, 8], [3, 3, 8, 16], 2),
            ([2, 1, 1, 32], [1, 1, 32, 8], 1),
        ] {
            let x_len = x_shape.iter().product();
            let w_len = w_shape.iter().product();
            let x = gpu.upload(&x_shape, &uniform(rng, x_len));
            let w = gpu.upload(&w_shape, &uniform(rng, w_len));
            let b = gpu.upload(&[w_shape[3]], &uniform(rng, w_shape[3]));
            let y = conv::forward(gpu, &x, &w, Some(&b), stride, Act::LeakyRelu);
            let g = ConvGeom::new(&x.shape, &w.shape, stride);
            let dz = gpu.upload(&y.shape, &uniform(rng, y.numel()));
            conv::backward_input(gpu, &dz, &w, &g);
            conv::backward_weight(gpu, &x, &dz, &g);
            conv::backward_bias(gpu, &dz);
            let x16 = gpu.convert(&x, DType::F16).unwrap();
            let w16 = gpu.convert(&w, DType::F16).unwrap();
            let y16 = conv::forward(gpu, &x16, &w16, Some(&b), stride, Act::LeakyRelu);
            gpu.download(&y16).unwrap();
        }
    }
    gpu.kernels.borrow_mut().force_family(None);
}

/// Every pipeline the engine creates on its paths, as the pipeline cache recorded them, and
/// the product widths (`gn`) of every convolution it ran.
fn engine_pipelines(gpu: &Gpu) -> (Vec<PipelineConfig>, BTreeSet<usize>) {
    let mut rng = Rng::new(7);
    gpu.kernels.borrow_mut().start_recording();
    let model = load_model(gpu, None).expect("the default model");
    score(gpu, &model.store, &mut rng);
    score(
        gpu,
        &model.store.to_dtype(gpu, DType::F16).unwrap(),
        &mut rng,
    );
    train(gpu, &mut rng);
    sorter_steps(gpu, &mut rng);
    baselines(gpu, &mut rng);
    other_ops(gpu, &mut rng);
    forced_families(gpu, &mut rng);
    gpu.sync().unwrap();
    let shapes = gpu.kernels.borrow_mut().take_recording();
    let widths = shapes
        .keys()
        .map(|key| {
            let (product, g) =
                parse_tune_key(key, 1).unwrap_or_else(|| panic!("unreadable shape key {key:?}"));
            product.gemm(&g).1
        })
        .collect();
    (gpu.created_pipelines(), widths)
}

/// The launches of every candidate configuration of every convolution family for each
/// product width, in f32 and, where the kernel runs f16, in f16. Each launch comes with the
/// activation the family lists (none) and every activation the engine ran the same kernel and
/// product with, since a tuned configuration serves every layer of its shape.
fn candidate_pipelines(
    widths: &BTreeSet<usize>,
    created: &[PipelineConfig],
) -> Vec<PipelineConfig> {
    let constant = |c: &[(&str, f64)], name: &str| {
        c.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_bits())
    };
    let mut activations: HashMap<(&str, &str, Option<u64>), BTreeSet<u64>> = HashMap::new();
    for p in created {
        if let Some(act) = constant(&p.constants, "ACT") {
            activations
                .entry((p.file, p.entry, constant(&p.constants, "MODE")))
                .or_default()
                .insert(act);
        }
    }
    let mut out = Vec::new();
    for &family in FAMILIES {
        for &gn in widths {
            for cfg in family.candidates(gn) {
                for (kernel, constants) in family.launches(&cfg) {
                    let mode = constant(&constants, "MODE");
                    let mut variants = vec![constants.clone()];
                    if let Some(acts) = activations.get(&(kernel.file, kernel.entry, mode)) {
                        for &act in acts {
                            let mut c = constants.clone();
                            for (name, value) in c.iter_mut() {
                                if *name == "ACT" {
                                    *value = f64::from_bits(act);
                                }
                            }
                            variants.push(c);
                        }
                    }
                    for c in variants {
                        out.push(PipelineConfig::new(kernel, &c, DType::F32));
                        if kernel.f16 {
                            out.push(PipelineConfig::new(kernel, &c, DType::F16));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Configurations equal but for the order of their constants are one.
fn deduplicated(configs: Vec<PipelineConfig>) -> Vec<PipelineConfig> {
    let mut seen = BTreeSet::new();
    configs
        .into_iter()
        .filter(|p| {
            let mut constants: Vec<(&str, u64)> =
                p.constants.iter().map(|(n, v)| (*n, v.to_bits())).collect();
            constants.sort();
            seen.insert((p.file, p.entry, constants, p.dtype == DType::F16))
        })
        .collect()
}

// ------------------------------------------------------------------ translation

/// The backends' shading languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// The shader itself: naga's WGSL front end and the override constants' values.
    Wgsl,
    /// Not a language: the limits every WebGPU adapter offers (`wgpu::Limits::default()`),
    /// which naga does not check and a device checks only against its own, larger ones.
    Limits,
    SpirV,
    Msl,
    Hlsl,
    GlslEs,
}

impl Target {
    const ALL: [Target; 6] = [
        Target::Wgsl,
        Target::Limits,
        Target::SpirV,
        Target::Msl,
        Target::Hlsl,
        Target::GlslEs,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Wgsl => "WGSL and overrides",
            Target::Limits => "WebGPU default limits",
            Target::SpirV => "SPIR-V 1.3 (Vulkan 1.1)",
            Target::Msl => "MSL 2.0 (Metal)",
            Target::Hlsl => "HLSL (DX12)",
            Target::GlslEs => "GLSL ES 3.10 (OpenGL ES)",
        }
    }
}

/// A shader as naga holds it: parsed and validated, and once specialised, with its
/// overrides replaced by the configuration's values.
struct Shader {
    module: naga::Module,
    info: naga::valid::ModuleInfo,
}

/// How the engine compiles its shaders: without naga's injected runtime checks unless
/// `ASNA_SHADER_CHECKS=on` (src/gpu/pipeline.rs, `shader_checks`).
fn bounds_policies() -> naga::proc::BoundsCheckPolicies {
    let policy = if shader_checks() {
        naga::proc::BoundsCheckPolicy::Restrict
    } else {
        naga::proc::BoundsCheckPolicy::Unchecked
    };
    naga::proc::BoundsCheckPolicies {
        index: policy,
        buffer: policy,
        image_load: policy,
        binding_array: policy,
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out += &format!(": {c}");
        cause = c.source();
    }
    out
}

fn validator() -> naga::valid::Validator {
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
}

/// Parses and validates each shader variant once.
#[derive(Default)]
struct Modules(HashMap<(&'static str, bool), Result<Shader, String>>);

impl Modules {
    fn specialise(&mut self, p: &PipelineConfig) -> Result<Shader, String> {
        let parsed = self
            .0
            .entry((p.file, p.dtype == DType::F16))
            .or_insert_with(|| {
                let source = p.wgsl();
                let module = naga::front::wgsl::parse_str(&source).map_err(|e| {
                    let line = e.location(&source).map_or(0, |l| l.line_number);
                    format!("{}:{line}: {}", p.file, e.message())
                })?;
                let info = validator()
                    .validate(&module)
                    .map_err(|e| error_chain(e.as_inner()))?;
                Ok(Shader { module, info })
            });
        let parsed = parsed.as_ref().map_err(|e| format!("naga: {e}"))?;
        let constants: naga::back::PipelineConstants = p
            .constants
            .iter()
            .map(|(name, value)| (name.to_string(), *value))
            .collect();
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &parsed.module,
            &parsed.info,
            Some((naga::ShaderStage::Compute, p.entry)),
            &constants,
        )
        .map_err(|e| format!("naga: {}", error_chain(&e)))?;
        Ok(Shader {
            module: module.into_owned(),
            info: info.into_owned(),
        })
    }
}

/// What a pipeline asks of the device: its workgroup size, its workgroup memory and the
/// buffers of its bind group layout.
#[derive(Clone, Copy, Default)]
struct ResourceUse {
    workgroup_size: [u32; 3],
    workgroup_bytes: u32,
    storage_buffers: u32,
    uniform_buffers: u32,
}

impl ResourceUse {
    fn of(p: &PipelineConfig, s: &Shader) -> Result<ResourceUse, String> {
        let index = s
            .module
            .entry_points
            .iter()
            .position(|ep| ep.name == p.entry)
            .ok_or("no such entry point")?;
        let uses = s.info.get_entry_point(index);
        let workgroup_bytes = s
            .module
            .global_variables
            .iter()
            .filter(|(handle, g)| {
                g.space == naga::AddressSpace::WorkGroup && !uses[*handle].is_empty()
            })
            .map(|(_, g)| s.module.types[g.ty].inner.size(s.module.to_ctx()))
            .sum();
        // The bind group layout counts against the limits, used or not: binding 0, the
        // parameter block, is a uniform buffer.
        let windows = p
            .bindings
            .iter()
            .filter(|a| **a == Access::UniformWindow)
            .count() as u32;
        let out = ResourceUse {
            workgroup_size: s.module.entry_points[index].workgroup_size,
            workgroup_bytes,
            storage_buffers: p.bindings.len() as u32 - windows,
            uniform_buffers: 1 + windows,
        };
        Ok(out)
    }

    /// The larger of each field.
    fn max(&self, other: &ResourceUse) -> ResourceUse {
        let larger = if other.invocations() > self.invocations() {
            other.workgroup_size
        } else {
            self.workgroup_size
        };
        ResourceUse {
            workgroup_size: larger,
            workgroup_bytes: self.workgroup_bytes.max(other.workgroup_bytes),
            storage_buffers: self.storage_buffers.max(other.storage_buffers),
            uniform_buffers: self.uniform_buffers.max(other.uniform_buffers),
        }
    }

    fn invocations(&self) -> u32 {
        self.workgroup_size.iter().product()
    }

    /// Each limit this use exceeds, as "what value > limit".
    fn over(&self, limits: &wgpu::Limits) -> Vec<String> {
        let [x, y, z] = self.workgroup_size;
        [
            ("workgroup x", x, limits.max_compute_workgroup_size_x),
            ("workgroup y", y, limits.max_compute_workgroup_size_y),
            ("workgroup z", z, limits.max_compute_workgroup_size_z),
            (
                "invocations per workgroup",
                self.invocations(),
                limits.max_compute_invocations_per_workgroup,
            ),
            (
                "workgroup memory bytes",
                self.workgroup_bytes,
                limits.max_compute_workgroup_storage_size,
            ),
            (
                "storage buffers",
                self.storage_buffers,
                limits.max_storage_buffers_per_shader_stage,
            ),
            (
                "uniform buffers",
                self.uniform_buffers,
                limits.max_uniform_buffers_per_shader_stage,
            ),
        ]
        .into_iter()
        .filter(|(_, value, limit)| value > limit)
        .map(|(what, value, limit)| format!("{what} {value} > {limit}"))
        .collect()
    }
}

/// SPIR-V with every buffer in a descriptor set binding, as wgpu's Vulkan backend maps them
/// (the engine's bindings are numbered from 0 without gaps, so each keeps its number).
fn spirv(p: &PipelineConfig, s: &Shader) -> Result<Vec<u8>, String> {
    let binding_map = buffer_bindings(&s.module)
        .into_iter()
        .map(|(binding, _)| {
            let info = naga::back::spv::BindingInfo {
                descriptor_set: binding.group,
                binding: binding.binding,
                binding_array_size: None,
            };
            (binding, info)
        })
        .collect();
    let checks = shader_checks();
    let options = naga::back::spv::Options {
        binding_map,
        lang_version: (1, 3),
        bounds_check_policies: bounds_policies(),
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: checks,
        emit_int_div_checks: checks,
        fake_missing_bindings: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: p.entry.to_string(),
    };
    let words = naga::back::spv::write_vec(&s.module, &s.info, &options, Some(&pipeline))
        .map_err(|e| error_chain(&e))?;
    Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
}

/// The buffer bindings of the module's resources, by (group, binding).
fn buffer_bindings(module: &naga::Module) -> Vec<(naga::ResourceBinding, naga::AddressSpace)> {
    let mut out: Vec<_> = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| g.binding.map(|b| (b, g.space)))
        .collect();
    out.sort_by_key(|(b, _)| (b.group, b.binding));
    out
}

/// MSL with every buffer in a slot, as wgpu's Metal backend assigns them (a slot per binding,
/// and one more for the sizes of runtime-sized arrays).
fn msl(p: &PipelineConfig, s: &Shader) -> Result<String, String> {
    let bindings = buffer_bindings(&s.module);
    let mut resources = naga::back::msl::EntryPointResources {
        sizes_buffer: Some(bindings.len() as u8),
        ..Default::default()
    };
    for (slot, (binding, space)) in bindings.iter().enumerate() {
        let mutable = matches!(space, naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE));
        resources.resources.insert(
            *binding,
            naga::back::msl::BindTarget {
                buffer: Some(slot as u8),
                mutable,
                ..Default::default()
            },
        );
    }
    let checks = shader_checks();
    let options = naga::back::msl::Options {
        lang_version: (2, 0),
        per_entry_point_map: [(p.entry.to_string(), resources)].into_iter().collect(),
        fake_missing_bindings: false,
        bounds_check_policies: bounds_policies(),
        zero_initialize_workgroup_memory: false,
        force_loop_bounding: checks,
        emit_int_div_checks: checks,
        ..Default::default()
    };
    let pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, p.entry.to_string())),
        ..Default::default()
    };
    naga::back::msl::write_string(&s.module, &s.info, &options, &pipeline)
        .map(|(text, _)| text)
        .map_err(|e| error_chain(&e))
}

/// HLSL for shader model 5.1 (DX12's baseline), or 6.2 for f16 (its first with 16-bit types).
fn hlsl(p: &PipelineConfig, s: &Shader) -> Result<String, String> {
    let options = naga::back::hlsl::Options {
        shader_model: match p.dtype {
            DType::F32 => naga::back::hlsl::ShaderModel::V5_1,
            DType::F16 => naga::back::hlsl::ShaderModel::V6_2,
        },
        zero_initialize_workgroup_memory: false,
        restrict_indexing: shader_checks(),
        force_loop_bounding: shader_checks(),
        ..Default::default()
    };
    let pipeline = naga::back::hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, p.entry.to_string())),
    };
    let mut text = String::new();
    naga::back::hlsl::Writer::new(&mut text, &options, &pipeline)
        .write(&s.module, &s.info, None)
        .map_err(|e| error_chain(&e))?;
    Ok(text)
}

/// GLSL ES 3.10 with uniform and storage blocks numbered separately, as wgpu's GL backend
/// numbers them.
fn glsl(p: &PipelineConfig, s: &Shader) -> Result<String, String> {
    let (mut uniforms, mut storage) = (0u8, 0u8);
    let mut binding_map = naga::back::glsl::BindingMap::default();
    for (binding, space) in buffer_bindings(&s.module) {
        let counter = match space {
            naga::AddressSpace::Uniform => &mut uniforms,
            _ => &mut storage,
        };
        binding_map.insert(binding, *counter);
        *counter += 1;
    }
    let options = naga::back::glsl::Options {
        version: naga::back::glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        binding_map,
        zero_initialize_workgroup_memory: false,
        ..Default::default()
    };
    let pipeline = naga::back::glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: p.entry.to_string(),
        multiview: None,
    };
    let mut text = String::new();
    naga::back::glsl::Writer::new(
        &mut text,
        &s.module,
        &s.info,
        &options,
        &pipeline,
        bounds_policies(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| error_chain(&e))?;
    Ok(text)
}

// ------------------------------------------------------------------ external validators

/// A validator the test runs: its program, the Debian package that has it, its arguments
/// before the files, and whether it takes many files at once (and names each in its output).
struct Tool {
    program: &'static str,
    package: &'static str,
    args: &'static [&'static str],
    many_files: bool,
}

const SPIRV_VAL: Tool = Tool {
    program: "spirv-val",
    package: "spirv-tools",
    args: &["--target-env", "vulkan1.1"],
    many_files: false,
};

/// Without `-l` each file is compiled on its own; one process for many files saves the
/// start-up (tens of milliseconds, most of its time per file).
const GLSLANG: Tool = Tool {
    program: "glslangValidator",
    package: "glslang-tools",
    args: &[],
    many_files: true,
};

fn require(tool: &Tool) {
    let found = Command::new(tool.program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{} not found: install it (Debian/Ubuntu: `apt-get install {}`; .ci/run does)",
        tool.program, tool.package
    );
}

/// Runs `tool` on `files`; None when it accepts them all, else its first lines of output.
fn run_tool(tool: &Tool, files: &[PathBuf]) -> Option<String> {
    let out = Command::new(tool.program)
        .args(tool.args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.program));
    if out.status.success() {
        return None;
    }
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !names.iter().any(|n| n == l))
            .take(3)
            .collect::<Vec<_>>()
            .join(" | "),
    )
}

/// Runs `tool` over the files, on every core; the messages of those it rejects, by index. A
/// group of files that fails is run again file by file to tell which.
fn run_validator(tool: &Tool, files: &[PathBuf]) -> Vec<(usize, String)> {
    let group = if tool.many_files { 64 } else { 1 };
    let groups: Vec<(usize, &[PathBuf])> = files
        .chunks(group)
        .enumerate()
        .map(|(k, chunk)| (k * group, chunk))
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(first, chunk)) = groups.get(k) else {
                    break;
                };
                if run_tool(tool, chunk).is_none() {
                    continue;
                }
                for (i, file) in chunk.iter().enumerate() {
                    if let Some(message) = run_tool(tool, std::slice::from_ref(file)) {
                        failures.lock().unwrap().push((first + i, message));
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// Where the translations go: `ASNA_PORTABILITY_OUT` if set (every language kept there, with
/// `index.tsv` naming each file's configuration, for compilers this machine lacks), else a
/// temporary directory removed when every configuration passes.
fn output_dir() -> (PathBuf, bool) {
    let (dir, keep) = match std::env::var_os("ASNA_PORTABILITY_OUT") {
        Some(dir) => (PathBuf::from(dir), true),
        None => {
            let dir = std::env::temp_dir().join(format!("asna-portability-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            (dir, false)
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    (dir, keep)
}

fn write(dir: &Path, name: String, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every entry point of every embedded shader is among the configurations, and every shader
/// generic over its element type has f16 ones: a kernel that no path here creates would
/// otherwise go unchecked.
fn assert_every_entry_point_reached(configs: &[PipelineConfig]) {
    let reached: BTreeSet<(&str, &str, bool)> = configs
        .iter()
        .map(|p| (p.file, p.entry, p.dtype == DType::F16))
        .collect();
    let mut missing = Vec::new();
    for (file, source) in asna::ops::all_shaders() {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(source)));
        for ep in &module.entry_points {
            if !reached.contains(&(file, ep.name.as_str(), false)) {
                missing.push(format!("{file}:{}", ep.name));
            }
        }
        let generic = shader_source(source, DType::F16).is_some();
        if generic && !reached.iter().any(|(f, _, f16)| *f == file && *f16) {
            missing.push(format!("{file} in f16"));
        }
    }
    assert!(
        missing.is_empty(),
        "no pipeline created for {}: run the paths that use them in this test",
        missing.join(", ")
    );
}

#[test]
fn every_pipeline_translates_to_every_backend_language() {
    require(&SPIRV_VAL);
    require(&GLSLANG);
    let gpu = Gpu::default_adapter().expect("a GPU adapter (lavapipe on CI)");
    assert!(
        gpu.features.contains(wgpu::Features::SHADER_F16),
        "{} has no shader-f16, so the f16 pipelines cannot be created: run on an adapter with it \
         (Mesa's lavapipe has it: WGPU_BACKEND=vulkan WGPU_ADAPTER_NAME=llvmpipe)",
        gpu.describe()
    );
    let (created, widths) = engine_pipelines(&gpu);
    let engine_count = deduplicated(created.clone()).len();
    let mut configs = created.clone();
    configs.extend(candidate_pipelines(&widths, &created));
    let configs = deduplicated(configs);

    assert_every_entry_point_reached(&configs);
    assert!(
        configs.len() > 100,
        "only {} configurations: the engine's paths did not run",
        configs.len()
    );

    let (dir, keep) = output_dir();
    let mut failures: Vec<(usize, Target, String)> = Vec::new();
    let mut translated: BTreeMap<Target, usize> = BTreeMap::new();
    let mut spv_files = Vec::new();
    let mut glsl_files = Vec::new();
    let mut index = String::new();
    let mut largest = ResourceUse::default();
    let mut above_gles_minimum = BTreeSet::new();
    let mut modules = Modules::default();
    for (i, p) in configs.iter().enumerate() {
        index += &format!("{i}\t{}\n", p.describe());
        let s = match modules.specialise(p) {
            Ok(s) => s,
            Err(e) => {
                failures.push((i, Target::Wgsl, e));
                continue;
            }
        };
        for target in Target::ALL {
            let result = match target {
                // Parsed, validated and specialised above.
                Target::Wgsl => Ok(()),
                Target::Limits => ResourceUse::of(p, &s).and_then(|used| {
                    largest = largest.max(&used);
                    for over in used.over(&wgpu::Limits::downlevel_defaults()) {
                        above_gles_minimum.insert(format!("{}:{} ({over})", p.file, p.entry));
                    }
                    let over = used.over(&wgpu::Limits::default());
                    if over.is_empty() {
                        Ok(())
                    } else {
                        Err(over.join(", "))
                    }
                }),
                Target::SpirV => spirv(p, &s).map(|bytes| {
                    spv_files.push((i, write(&dir, format!("{i}.spv"), &bytes)));
                }),
                Target::Msl => msl(p, &s).map(|text| {
                    if keep {
                        write(&dir, format!("{i}.metal"), text.as_bytes());
                    }
                }),
                Target::Hlsl => hlsl(p, &s).map(|text| {
                    if keep {
                        write(&dir, format!("{i}.hlsl"), text.as_bytes());
                    }
                }),
                Target::GlslEs if p.dtype == DType::F16 => continue,
                Target::GlslEs => glsl(p, &s).map(|text| {
                    glsl_files.push((i, write(&dir, format!("{i}.comp"), text.as_bytes())));
                }),
            };
            match result {
                Ok(()) => *translated.entry(target).or_default() += 1,
                Err(e) if target == Target::Limits => failures.push((i, target, e)),
                Err(e) => failures.push((i, target, format!("naga: {e}"))),
            }
        }
    }
    write(&dir, "index.tsv".to_string(), index.as_bytes());
    for (tool, target, files) in [
        (&SPIRV_VAL, Target::SpirV, &spv_files),
        (&GLSLANG, Target::GlslEs, &glsl_files),
    ] {
        let paths: Vec<PathBuf> = files.iter().map(|(_, f)| f.clone()).collect();
        for (k, message) in run_validator(tool, &paths) {
            let (i, _) = files[k];
            failures.push((i, target, format!("{}: {message}", tool.program)));
        }
    }

    let f16 = configs.iter().filter(|p| p.dtype == DType::F16).count();
    eprintln!(
        "{} pipeline configurations ({engine_count} created by the engine's paths, the rest \
         candidate tiles), {f16} of them f16, on {}",
        configs.len(),
        gpu.describe()
    );
    for (target, n) in &translated {
        eprintln!("  {}: {n} pass", target.name());
    }
    eprintln!(
        "  spirv-val: {} checked; glslangValidator: {} checked",
        spv_files.len(),
        glsl_files.len()
    );
    eprintln!(
        "  largest: {} invocations per workgroup, {} bytes of workgroup memory, {} storage \
         and {} uniform buffers",
        largest.invocations(),
        largest.workgroup_bytes,
        largest.storage_buffers,
        largest.uniform_buffers
    );
    for entry in &above_gles_minimum {
        eprintln!("  above the OpenGL ES 3.1 minimum limits: {entry}");
    }
    if keep {
        eprintln!("  outputs kept in {}", dir.display());
    }
    if failures.is_empty() {
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return;
    }
    failures.sort_by_key(|(i, target, _)| (*i, *target));
    let lines: Vec<String> = failures
        .iter()
        .map(|(i, target, message)| {
            format!("{} [{}]: {message}", configs[*i].describe(), target.name())
        })
        .collect();
    panic!(
        "{} failures among {} configurations (outputs in {}):\n{}",
        failures.len(),
        configs.len(),
        dir.display(),
        lines.join("\n")
    );
}
