//! Loss terms over one batch of scores: mean squared and absolute errors, the clamped Pearson term
//! 1 - r^2, each with its gradient (the L2 term is a squared norm, see reduce).
//!
//! Shader: shaders/loss.wgsl · Reference and tests: tests/ops/loss.rs · Gradient rules: `Mse`,
//! `Mae`, `PearsonTerm` in src/autograd/mod.rs

use super::{f32_only, kernel, R, RW};
use crate::gpu::{Gpu, Kernel, Tensor};

const MSE_FORWARD: Kernel = kernel("loss.wgsl", "mse_forward", &[RW, R, R, R]);
const MSE_BACKWARD: Kernel = kernel("loss.wgsl", "mse_backward", &[RW, R, R, R]);
const MAE_FORWARD: Kernel = kernel("loss.wgsl", "mae_forward", &[RW, R, R, R]);
const MAE_BACKWARD: Kernel = kernel("loss.wgsl", "mae_backward", &[RW, R, R, R]);
const PEARSON_FORWARD: Kernel = kernel("loss.wgsl", "pearson_forward", &[RW, R, R, R]);
const PEARSON_BACKWARD: Kernel = kernel("loss.wgsl", "pearson_backward", &[RW, R, R, R]);

fn scalar_op(gpu: &Gpu, k: &Kernel, a: &Tensor, b: &Tensor) -> Tensor {
    f32_only(k.entry, &[a, b]);
    assert_eq!(
        a.numel(),
        b.numel(),
        "loss: prediction and target sizes differ"
    );
    let out = gpu.empty(&[1]);
    gpu.dispatch(
        k,
        &[],
        &[a.numel() as u32, 0, 0, 0],
        &[out.raw(), a.raw(), b.raw(), a.raw()],
        [1, 1, 1],
        (4.0 * a.numel() as f64, 0.0),
    );
    out
}

fn grad_op(gpu: &Gpu, k: &Kernel, a: &Tensor, b: &Tensor, g: &Tensor) -> Tensor {
    f32_only(k.entry, &[a, b, g]);
    let out = gpu.empty(&a.shape);
    gpu.dispatch(
        k,
        &[],
        &[a.numel() as u32, 0, 0, 0],
        &[out.raw(), a.raw(), b.raw(), g.raw()],
        [1, 1, 1],
        (8.0 * a.numel() as f64, 0.0),
    );
    out
}

/// mean((a - b)^2) as a 1-element tensor.
pub fn mse(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    scalar_op(gpu, &MSE_FORWARD, a, b)
}

/// d mse / d a, times the upstream scalar gradient g.
pub fn mse_backward(gpu: &Gpu, a: &Tensor, b: &Tensor, g: &Tensor) -> Tensor {
    grad_op(gpu, &MSE_BACKWARD, a, b, g)
}

/// mean(|a - b|).
pub fn mae(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    scalar_op(gpu, &MAE_FORWARD, a, b)
}

pub fn mae_backward(gpu: &Gpu, a: &Tensor, b: &Tensor, g: &Tensor) -> Tensor {
    grad_op(gpu, &MAE_BACKWARD, a, b, g)
}

/// 1 - clamp(pearson(a, b), -1, 1)^2.
pub fn pearson_term(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    scalar_op(gpu, &PEARSON_FORWARD, a, b)
}

pub fn pearson_term_backward(gpu: &Gpu, a: &Tensor, b: &Tensor, g: &Tensor) -> Tensor {
    grad_op(gpu, &PEARSON_BACKWARD, a, b, g)
}
