//! uint8 RGB images to the model's normalised input.
//!
//! Shader: shaders/image.wgsl · Reference and tests: tests/ops/image.rs

use super::{kernel_f16, R, RW};
use crate::gpu::{grid_1d, DType, Gpu, Kernel, Tensor};

const U8_TO_UNIT: Kernel = kernel_f16("image.wgsl", "u8_to_unit", &[RW, R]);

/// Packed pixels [n, h, w, 3] (u8) -> x = (u8 - 127.5) / 127.5 as an NHWC f32 tensor.
pub fn to_input(gpu: &Gpu, pixels: &[u8], n: usize, h: usize, w: usize) -> Tensor {
    to_input_as(gpu, pixels, n, h, w, DType::F32)
}

/// `to_input` stored as `dtype`.
pub fn to_input_as(gpu: &Gpu, pixels: &[u8], n: usize, h: usize, w: usize, dtype: DType) -> Tensor {
    let total = n * h * w * 3;
    assert_eq!(
        pixels.len(),
        total,
        "image batch: expected {total} bytes, got {}",
        pixels.len()
    );
    let bytes = gpu.upload_bytes(pixels);
    let out = gpu.empty_as(&[n, h, w, 3], dtype);
    gpu.dispatch_as(
        &U8_TO_UNIT,
        dtype,
        &[],
        &[total as u32, 0, 0, 0],
        &[out.raw(), bytes.raw()],
        grid_1d(total.div_ceil(4)),
        (2.0 * total as f64, 5.0 * total as f64),
    );
    out
}
