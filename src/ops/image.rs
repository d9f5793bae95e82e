//! uint8 RGB images to the model's normalised input.

use super::{kernel, R, RW};
use crate::gpu::{grid_1d, Gpu, Kernel, Tensor};

const U8_TO_UNIT: Kernel = kernel("image.wgsl", "u8_to_unit", &[RW, R]);

/// Packed pixels [n, h, w, 3] (u8) -> x = (u8 - 127.5) / 127.5 as an NHWC f32 tensor.
pub fn to_input(gpu: &Gpu, pixels: &[u8], n: usize, h: usize, w: usize) -> Tensor {
    let total = n * h * w * 3;
    assert_eq!(
        pixels.len(),
        total,
        "image batch: expected {total} bytes, got {}",
        pixels.len()
    );
    let bytes = gpu.upload_bytes(pixels);
    let out = gpu.empty(&[n, h, w, 3]);
    gpu.dispatch(
        &U8_TO_UNIT,
        &[],
        &[total as u32, 0, 0, 0],
        &[out.raw(), bytes.raw()],
        grid_1d(total),
        (2.0 * total as f64, 5.0 * total as f64),
    );
    out
}
