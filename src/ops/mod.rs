//! GPU ops, one module per op family: each launches its WGSL kernels forward and backward.
//! Ops are plain functions from tensors to tensors; the autograd tape decides what to keep.

pub mod adam;
pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod eltwise;
pub mod image;
pub mod loss;
pub mod pool;
pub mod quality;
pub mod reduce;

use crate::gpu::{Access, DType, Kernel, Tensor};

/// The ops' embedded shader files, by name; each convolution family embeds its own
/// (`conv::ConvFamily::shader`, and `all_shaders` for both).
pub const SHADERS: &[(&str, &str)] = &[
    ("adam.wgsl", include_str!("../../shaders/adam.wgsl")),
    (
        "batchnorm.wgsl",
        include_str!("../../shaders/batchnorm.wgsl"),
    ),
    ("concat.wgsl", include_str!("../../shaders/concat.wgsl")),
    (
        "conv_col2im.wgsl",
        include_str!("../../shaders/conv_col2im.wgsl"),
    ),
    ("eltwise.wgsl", include_str!("../../shaders/eltwise.wgsl")),
    ("image.wgsl", include_str!("../../shaders/image.wgsl")),
    ("loss.wgsl", include_str!("../../shaders/loss.wgsl")),
    ("pool.wgsl", include_str!("../../shaders/pool.wgsl")),
    ("quality.wgsl", include_str!("../../shaders/quality.wgsl")),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
];

/// Every embedded shader file, by name: the ops' own and each convolution family's, once.
pub fn all_shaders() -> Vec<(&'static str, &'static str)> {
    let mut out = SHADERS.to_vec();
    for family in conv::FAMILIES {
        for shader in family.shaders() {
            if !out.contains(&shader) {
                out.push(shader);
            }
        }
    }
    out
}

pub(crate) const fn shader(name: &str) -> &'static str {
    // A const lookup keeps each Kernel a `const` item.
    let mut i = 0;
    while i < SHADERS.len() {
        if const_eq(SHADERS[i].0, name) {
            return SHADERS[i].1;
        }
        i += 1;
    }
    panic!("unknown shader")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub(crate) const R: Access = Access::Read;
pub(crate) const RW: Access = Access::ReadWrite;
pub(crate) const U: Access = Access::UniformWindow;

pub(crate) const fn kernel(
    file: &'static str,
    entry: &'static str,
    bindings: &'static [Access],
) -> Kernel {
    kernel_in((file, shader(file)), entry, bindings)
}

/// A kernel of a shader given as (file name, source), f32 only.
pub(crate) const fn kernel_in(
    shader: (&'static str, &'static str),
    entry: &'static str,
    bindings: &'static [Access],
) -> Kernel {
    Kernel {
        file: shader.0,
        source: shader.1,
        entry,
        bindings,
        f16: false,
    }
}

/// `kernel_in` for a kernel of the scoring forward pass, which also has an f16 variant.
pub(crate) const fn kernel_in_f16(
    shader: (&'static str, &'static str),
    entry: &'static str,
    bindings: &'static [Access],
) -> Kernel {
    Kernel {
        f16: true,
        ..kernel_in(shader, entry, bindings)
    }
}

/// A kernel of the scoring forward pass, which also has an f16 variant.
pub(crate) const fn kernel_f16(
    file: &'static str,
    entry: &'static str,
    bindings: &'static [Access],
) -> Kernel {
    Kernel {
        f16: true,
        ..kernel(file, entry, bindings)
    }
}

/// The common element type of an op's tensor inputs.
#[track_caller]
pub(crate) fn same_dtype(op: &str, tensors: &[&Tensor]) -> DType {
    let d = tensors[0].dtype;
    assert!(
        tensors.iter().all(|t| t.dtype == d),
        "{op}: inputs mix element types {:?}",
        tensors.iter().map(|t| t.dtype).collect::<Vec<_>>()
    );
    d
}

/// Guards the ops whose kernels are f32 only (training, losses, optimiser).
#[track_caller]
pub(crate) fn f32_only(op: &str, tensors: &[&Tensor]) {
    assert!(
        tensors.iter().all(|t| t.dtype == DType::F32),
        "{op} runs on f32 tensors only (f16 is for the scoring forward pass)"
    );
}

/// Activation functions, numbered as the shaders number them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None = 0,
    LeakyRelu = 1,
    Relu = 2,
    Sigmoid = 3,
    Tanh = 4,
}
