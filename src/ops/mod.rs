//! GPU ops, one file per kernel family: each launches its WGSL kernels forward and backward.
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

use crate::gpu::{Access, Kernel};

/// Every embedded shader file, by name, for validation and for the pipeline cache.
pub const SHADERS: &[(&str, &str)] = &[
    ("adam.wgsl", include_str!("../../shaders/adam.wgsl")),
    (
        "batchnorm.wgsl",
        include_str!("../../shaders/batchnorm.wgsl"),
    ),
    ("concat.wgsl", include_str!("../../shaders/concat.wgsl")),
    ("conv.wgsl", include_str!("../../shaders/conv.wgsl")),
    ("eltwise.wgsl", include_str!("../../shaders/eltwise.wgsl")),
    ("image.wgsl", include_str!("../../shaders/image.wgsl")),
    ("loss.wgsl", include_str!("../../shaders/loss.wgsl")),
    ("pool.wgsl", include_str!("../../shaders/pool.wgsl")),
    ("quality.wgsl", include_str!("../../shaders/quality.wgsl")),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
];

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

pub(crate) const fn kernel(
    file: &'static str,
    entry: &'static str,
    bindings: &'static [Access],
) -> Kernel {
    Kernel {
        file,
        source: shader(file),
        entry,
        bindings,
    }
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
