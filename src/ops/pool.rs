//! 2x2 max pooling and 2x nearest upsampling, forward and backward.
//!
//! Shader: shaders/pool.wgsl · Reference and tests: tests/ops/pool.rs · Gradient rules:
//! `MaxPool`, `Upsample` in src/autograd/mod.rs

use super::{kernel, kernel_f16, same_dtype, R, RW};
use crate::gpu::{grid_1d, Gpu, Kernel, Tensor};

// Forward kernels run on f32 or f16 tensors, the adjoints on f32 only.
const MAXPOOL_FORWARD: Kernel = kernel_f16("pool.wgsl", "maxpool_forward", &[RW, R, R]);
const MAXPOOL_FORWARD4: Kernel = kernel_f16("pool.wgsl", "maxpool_forward4", &[RW, R]);
const MAXPOOL_BACKWARD: Kernel = kernel("pool.wgsl", "maxpool_backward", &[RW, R, R]);
const UPSAMPLE_FORWARD: Kernel = kernel_f16("pool.wgsl", "upsample_forward", &[RW, R, R]);
const UPSAMPLE_BACKWARD: Kernel = kernel("pool.wgsl", "upsample_backward", &[RW, R, R]);

/// The pipeline's shape: the forward op's input [n, h, w, c] and output plane oh x ow.
fn shape_constants(h: usize, w: usize, c: usize, oh: usize, ow: usize) -> [(&'static str, f64); 5] {
    [
        ("H", h as f64),
        ("W", w as f64),
        ("C", c as f64),
        ("OH", oh as f64),
        ("OW", ow as f64),
    ]
}

fn params(n: usize, h: usize, w: usize, c: usize, oh: usize, ow: usize, total: usize) -> [u32; 8] {
    [
        n as u32,
        h as u32,
        w as u32,
        c as u32,
        oh as u32,
        ow as u32,
        total as u32,
        0,
    ]
}

/// [n, h, w, c] -> [n, h/2, w/2, c] (an odd last row or column is dropped, as 'valid' pooling).
pub fn maxpool(gpu: &Gpu, x: &Tensor) -> Tensor {
    let (n, h, w, c) = x.nhwc();
    let (oh, ow) = (h / 2, w / 2);
    let y = gpu.empty_as(&[n, oh, ow, c], x.dtype);
    let total = y.numel();
    if total == 0 {
        return y;
    }
    // Four channels as one vec4 per invocation where the channels allow (every shape of the
    // model).
    let (kernel, per) = if c % 4 == 0 {
        (&MAXPOOL_FORWARD4, 4)
    } else {
        (&MAXPOOL_FORWARD, 1)
    };
    let buffers: &[&wgpu::Buffer] = if per == 4 {
        &[y.raw(), x.raw()]
    } else {
        &[y.raw(), x.raw(), x.raw()]
    };
    gpu.dispatch_as(
        kernel,
        x.dtype,
        &shape_constants(h, w, c, oh, ow),
        &params(n, h, w, c, oh, ow, total / per),
        buffers,
        grid_1d(total / per),
        (3.0 * total as f64, (x.bytes() + y.bytes()) as f64),
    );
    y
}

/// dX: each window's gradient goes to its first maximum.
pub fn maxpool_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor) -> Tensor {
    let (n, h, w, c) = x.nhwc();
    let dtype = same_dtype("maxpool backward", &[x, dy]);
    let windows = dy.numel();
    if windows == 0 {
        // No window (a side under 2, or no channels): nothing reaches the input.
        return gpu.zeros_as(&x.shape, dtype);
    }
    let dx = gpu.empty_as(&x.shape, dtype);
    gpu.dispatch_as(
        &MAXPOOL_BACKWARD,
        dtype,
        &shape_constants(h, w, c, h / 2, w / 2),
        &params(n, h, w, c, h / 2, w / 2, windows),
        &[dx.raw(), x.raw(), dy.raw()],
        grid_1d(windows),
        (3.0 * windows as f64, (x.bytes() * 2 + dy.bytes()) as f64),
    );
    dx
}

/// [n, h, w, c] -> [n, 2h, 2w, c].
pub fn upsample(gpu: &Gpu, x: &Tensor) -> Tensor {
    let (n, h, w, c) = x.nhwc();
    let y = gpu.empty_as(&[n, 2 * h, 2 * w, c], x.dtype);
    let total = y.numel();
    if total == 0 {
        return y;
    }
    gpu.dispatch_as(
        &UPSAMPLE_FORWARD,
        x.dtype,
        &shape_constants(h, w, c, 2 * h, 2 * w),
        &params(n, h, w, c, 2 * h, 2 * w, total),
        &[y.raw(), x.raw(), x.raw()],
        grid_1d(total),
        (0.0, (x.bytes() + y.bytes()) as f64),
    );
    y
}

pub fn upsample_backward(gpu: &Gpu, dy: &Tensor) -> Tensor {
    let (n, oh, ow, c) = dy.nhwc();
    let (h, w) = (oh / 2, ow / 2);
    let dx = gpu.empty_as(&[n, h, w, c], dy.dtype);
    let total = dx.numel();
    if total == 0 {
        return dx;
    }
    gpu.dispatch_as(
        &UPSAMPLE_BACKWARD,
        dy.dtype,
        &shape_constants(h, w, c, oh, ow),
        &params(n, h, w, c, oh, ow, total),
        &[dx.raw(), dy.raw(), dy.raw()],
        grid_1d(total),
        (3.0 * total as f64, (dx.bytes() + dy.bytes()) as f64),
    );
    dx
}
