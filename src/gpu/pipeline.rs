//! Kernels and the pipeline cache: each (shader, entry point, override constants, element
//! type) is compiled once per process; bind group layouts are shared by every kernel with the
//! same bindings. The cache lists every pipeline it created (`PipelineConfig`), so that the
//! set of shader specialisations the engine really uses can be checked elsewhere
//! (tests/portability.rs translates each for every backend).
//!
//! Shaders on the scoring path are written once for both storage types: they declare their
//! activation and weight arrays as `array<elem>` under the line `alias elem = f32;`, and the
//! f16 variant is the same text with that alias switched to f16 (see `shader_source`).

use super::buffer::DType;
use std::borrow::Cow;
use std::collections::HashMap;

/// The line that makes a shader generic over its storage type.
pub const ELEM_ALIAS: &str = "alias elem = f32;";

/// The WGSL text of `source` for element type `dtype`: unchanged for f32; for f16 the alias
/// switched to f16 and `enable f16;` prepended (an `enable` must precede every declaration).
/// None when the shader is not generic and so has no f16 variant.
pub fn shader_source(source: &str, dtype: DType) -> Option<Cow<'_, str>> {
    match dtype {
        DType::F32 => Some(Cow::Borrowed(source)),
        DType::F16 => source.contains(ELEM_ALIAS).then(|| {
            Cow::Owned(format!(
                "enable f16;\n{}",
                source.replacen(ELEM_ALIAS, "alias elem = f16;", 1)
            ))
        }),
    }
}

/// Whether the shaders are compiled with naga's injected runtime checks (bounds checks on
/// arrays and buffers, loop bounding, guarded integer division). Off by default: the shaders
/// are trusted code and the checks cost integer operations on every load, which CPU drivers
/// feel most. `ASNA_SHADER_CHECKS=on` turns them back on (CI runs the op tests once so).
pub fn shader_checks() -> bool {
    static CHECKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHECKS.get_or_init(|| {
        std::env::var("ASNA_SHADER_CHECKS").is_ok_and(|v| matches!(v.as_str(), "on" | "1"))
    })
}

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
    /// A 64 KiB window of a buffer read as uniform memory (`UNIFORM_WINDOW` bytes from an
    /// offset): on CPU drivers the cheapest memory to read a value every invocation shares.
    UniformWindow,
}

/// Bytes of a uniform window: the 64 KiB every adapter allows in one uniform binding.
pub const UNIFORM_WINDOW: u64 = 65536;

/// A compute entry point in one of the embedded WGSL files. Binding 0 is always the uniform
/// parameter block; `bindings[i]` describes binding `i + 1`.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub file: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Access],
    /// Whether this entry point may run on f16 tensors (its shader is generic and the kernel
    /// is on the scoring path). Training kernels are f32 only.
    pub f16: bool,
}

/// One pipeline as the engine creates it: an entry point of a shader, its bindings, its
/// override constants and the element type of its storage arrays. Enough to rebuild its WGSL
/// module and specialise it outside the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub file: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    /// As `Kernel::bindings`: binding 0, the parameter block, comes before these.
    pub bindings: &'static [Access],
    pub constants: Vec<(&'static str, f64)>,
    pub dtype: DType,
}

impl PipelineConfig {
    pub fn new(kernel: &Kernel, constants: &[(&'static str, f64)], dtype: DType) -> Self {
        PipelineConfig {
            file: kernel.file,
            source: kernel.source,
            entry: kernel.entry,
            bindings: kernel.bindings,
            constants: constants.to_vec(),
            dtype,
        }
    }

    /// A readable name, e.g. `conv.wgsl:conv_gemm{MODE=0,TM=4,TN=4} f16`.
    pub fn describe(&self) -> String {
        let constants: Vec<String> = self
            .constants
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let dtype = match self.dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
        };
        format!(
            "{}:{}{{{}}} {dtype}",
            self.file,
            self.entry,
            constants.join(",")
        )
    }

    /// The WGSL text the pipeline's module is compiled from (its f16 variant for f16).
    pub fn wgsl(&self) -> Cow<'static, str> {
        shader_source(self.source, self.dtype)
            .unwrap_or_else(|| panic!("{} is not generic over its element type", self.file))
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    file: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    dtype: DType,
}

pub struct CachedPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub struct PipelineCache {
    modules: HashMap<(&'static str, DType), wgpu::ShaderModule>,
    layouts: HashMap<Vec<Access>, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: HashMap<PipelineKey, std::rc::Rc<CachedPipeline>>,
    /// Every pipeline created, in order of creation.
    pub created: Vec<PipelineConfig>,
}

/// A pipeline to create: a kernel, its override constants and element type.
pub type PipelineRequest = (Kernel, Vec<(&'static str, f64)>, DType);

impl PipelineCache {
    /// Whether the pipeline exists already.
    pub fn has(&self, kernel: &Kernel, constants: &[(&'static str, f64)], dtype: DType) -> bool {
        self.pipelines.contains_key(&PipelineKey {
            file: kernel.file,
            entry: kernel.entry,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
            dtype,
        })
    }

    pub fn get(
        &mut self,
        device: &wgpu::Device,
        disk: Option<&wgpu::PipelineCache>,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        dtype: DType,
    ) -> std::rc::Rc<CachedPipeline> {
        let key = PipelineKey {
            file: kernel.file,
            entry: kernel.entry,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
            dtype,
        };
        if let Some(p) = self.pipelines.get(&key) {
            return p.clone();
        }
        let module = self.modules.entry((kernel.file, dtype)).or_insert_with(|| {
            let source = shader_source(kernel.source, dtype)
                .unwrap_or_else(|| panic!("{} is not generic over its element type", kernel.file));
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(kernel.file),
                source: wgpu::ShaderSource::Wgsl(source),
            };
            if shader_checks() {
                device.create_shader_module(desc)
            } else {
                // SAFETY: the shaders are this project's own. Every index they compute is in
                // range for the shapes the ops launch (the op tests check every kernel with
                // the checks on, `ASNA_SHADER_CHECKS=on`, and off); every loop is bounded by
                // its parameters; every divisor is a shape dimension, never zero.
                unsafe {
                    device
                        .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
                }
            }
        });
        let (bgl, pl) = self
            .layouts
            .entry(kernel.bindings.to_vec())
            .or_insert_with(|| {
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }];
                for (i, a) in kernel.bindings.iter().enumerate() {
                    let (ty, min_binding_size) = match a {
                        Access::UniformWindow => (
                            wgpu::BufferBindingType::Uniform,
                            wgpu::BufferSize::new(UNIFORM_WINDOW),
                        ),
                        _ => (
                            wgpu::BufferBindingType::Storage {
                                read_only: *a == Access::Read,
                            },
                            None,
                        ),
                    };
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: i as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty,
                            has_dynamic_offset: false,
                            min_binding_size,
                        },
                        count: None,
                    });
                }
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                (bgl, pl)
            });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(pl),
            module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: disk,
        });
        self.created
            .push(PipelineConfig::new(kernel, constants, dtype));
        let cached = std::rc::Rc::new(CachedPipeline {
            pipeline,
            layout: bgl.clone(),
        });
        self.pipelines.insert(key, cached.clone());
        cached
    }
}
