//! Batch normalisation over every axis but channels: training mode (batch statistics, biased
//! variance, gradient through the statistics) and evaluation mode (running statistics).
//!
//! Shader: shaders/batchnorm.wgsl · Reference and tests: tests/ops/batchnorm.rs · Gradient
//! rules: `BatchNormTrain`, `BatchNormEval` in src/autograd/mod.rs

use super::{f32_only, kernel, reduce, R, RW};
use crate::gpu::{f, grid_1d, Gpu, Kernel, Tensor};

const BN_NORMALIZE: Kernel = kernel("batchnorm.wgsl", "bn_normalize", &[RW, R, R, R, R, R, R, R]);
const BN_BACKWARD: Kernel = kernel("batchnorm.wgsl", "bn_backward", &[RW, R, R, R, R, R, R, R]);
const BN_NORMALIZE4: Kernel = kernel(
    "batchnorm.wgsl",
    "bn_normalize4",
    &[RW, R, R, R, R, R, R, R],
);
const BN_BACKWARD4: Kernel = kernel("batchnorm.wgsl", "bn_backward4", &[RW, R, R, R, R, R, R, R]);
const BN_BACKWARD_EVAL: Kernel = kernel(
    "batchnorm.wgsl",
    "bn_backward_eval",
    &[RW, R, R, R, R, R, R, R],
);
const BN_GAMMA_GRAD: Kernel = kernel(
    "batchnorm.wgsl",
    "bn_gamma_grad",
    &[RW, R, R, R, R, R, R, R],
);

const BN_FOLD: Kernel = kernel("batchnorm.wgsl", "bn_fold", &[RW, R, R, R, R, R, R, R]);

pub const EPS: f32 = 1e-3;
pub const MOMENTUM: f32 = 0.99;

/// Per-channel statistics of a batch: mean and biased variance.
pub struct BatchStats {
    pub mean: Tensor,
    pub var: Tensor,
}

fn rows_c(x: &Tensor) -> (usize, usize) {
    let c = x.channels();
    (x.numel() / c, c)
}

pub fn batch_stats(gpu: &Gpu, x: &Tensor) -> BatchStats {
    f32_only("batch_stats", &[x]);
    let (rows, c) = rows_c(x);
    let x3 = x.reshape(&[1, rows, c]);
    let inv = 1.0 / rows as f32;
    let mean = reduce::columns(gpu, &x3, reduce::Summand::Value, None, None, inv).reshape(&[c]);
    let var = reduce::columns(
        gpu,
        &x3,
        reduce::Summand::SquaredDeviation,
        None,
        Some(&mean),
        inv,
    )
    .reshape(&[c]);
    BatchStats { mean, var }
}

/// The kernel for `x`'s channel count and its threads: `vec4` (four channels an invocation)
/// where the channels are a multiple of 4, else `scalar`.
fn by_vec4<'k>(x: &Tensor, scalar: &'k Kernel, vec4: &'k Kernel) -> (&'k Kernel, usize) {
    if x.channels() % 4 == 0 {
        (vec4, x.numel() / 4)
    } else {
        (scalar, x.numel())
    }
}

fn params(x: &Tensor) -> [u32; 8] {
    let (rows, c) = rows_c(x);
    [x.numel() as u32, c as u32, rows as u32, 0, f(EPS), 0, 0, 0]
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta with the given statistics.
pub fn normalize(
    gpu: &Gpu,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Tensor {
    f32_only("batch_norm", &[x, mean, var, gamma, beta]);
    let y = gpu.empty(&x.shape);
    let n = x.numel();
    let (kernel, threads) = by_vec4(x, &BN_NORMALIZE, &BN_NORMALIZE4);
    gpu.dispatch(
        kernel,
        &[("C", rows_c(x).1 as f64)],
        &params(x),
        &[
            y.raw(),
            x.raw(),
            x.raw(),
            mean.raw(),
            var.raw(),
            gamma.raw(),
            beta.raw(),
            beta.raw(),
        ],
        grid_1d(threads),
        (4.0 * n as f64, 2.0 * x.bytes() as f64),
    );
    y
}

/// running <- momentum * running + (1 - momentum) * batch, as new tensors.
pub fn running_update(
    gpu: &Gpu,
    running_mean: &Tensor,
    running_var: &Tensor,
    stats: &BatchStats,
) -> (Tensor, Tensor) {
    (
        super::eltwise::axpby(gpu, MOMENTUM, running_mean, 1.0 - MOMENTUM, &stats.mean),
        super::eltwise::axpby(gpu, MOMENTUM, running_var, 1.0 - MOMENTUM, &stats.var),
    )
}

/// The per-channel sums every batch-norm gradient starts from: sum(dy) (which is dBeta) and
/// sum(dy * (x - mean)).
struct GradSums {
    sum_dy: Tensor,
    sum_dy_xc: Tensor,
}

fn grad_sums(gpu: &Gpu, x: &Tensor, dy: &Tensor, mean: &Tensor) -> GradSums {
    let (rows, c) = rows_c(x);
    let dy3 = dy.reshape(&[1, rows, c]);
    let sum_dy =
        reduce::gradient_columns(gpu, &dy3, reduce::Summand::Value, None, None, 1.0).reshape(&[c]);
    let sum_dy_xc = reduce::gradient_columns(
        gpu,
        &dy3,
        reduce::Summand::ProductWithDeviation,
        Some(&x.reshape(&[1, rows, c])),
        Some(mean),
        1.0,
    )
    .reshape(&[c]);
    GradSums { sum_dy, sum_dy_xc }
}

/// dGamma = sum(dy * (x - mean)) / sqrt(var + eps), one value per channel.
fn gamma_grad(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    stats: &BatchStats,
    gamma: &Tensor,
    sums: &GradSums,
) -> Tensor {
    let (rows, c) = rows_c(x);
    let dgamma = gpu.empty(&[c]);
    gpu.dispatch(
        &BN_GAMMA_GRAD,
        &[],
        &[c as u32, c as u32, rows as u32, 0, f(EPS), 0, 0, 0],
        &[
            dgamma.raw(),
            x.raw(),
            dy.raw(),
            stats.mean.raw(),
            stats.var.raw(),
            gamma.raw(),
            sums.sum_dy.raw(),
            sums.sum_dy_xc.raw(),
        ],
        grid_1d(c),
        (0.0, 0.0),
    );
    dgamma
}

/// Training-mode gradients (dX, dGamma, dBeta) through the batch statistics.
pub fn backward(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    stats: &BatchStats,
    gamma: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    f32_only("batch_norm backward", &[x, dy, gamma]);
    let sums = grad_sums(gpu, x, dy, &stats.mean);
    let dx = gpu.empty(&x.shape);
    let n = x.numel();
    let (kernel, threads) = by_vec4(x, &BN_BACKWARD, &BN_BACKWARD4);
    gpu.dispatch(
        kernel,
        &[("C", rows_c(x).1 as f64)],
        &params(x),
        &[
            dx.raw(),
            x.raw(),
            dy.raw(),
            stats.mean.raw(),
            stats.var.raw(),
            gamma.raw(),
            sums.sum_dy.raw(),
            sums.sum_dy_xc.raw(),
        ],
        grid_1d(threads),
        (8.0 * n as f64, 3.0 * x.bytes() as f64),
    );
    let dgamma = gamma_grad(gpu, x, dy, stats, gamma, &sums);
    (dx, dgamma, sums.sum_dy)
}

/// Gradients of gamma and beta alone, with `stats` taken as constants (evaluation mode, where
/// they are the running statistics): the same sums as [`backward`], without its dX kernel.
pub fn param_backward(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    stats: &BatchStats,
    gamma: &Tensor,
) -> (Tensor, Tensor) {
    f32_only("batch_norm param_backward", &[x, dy, gamma]);
    let sums = grad_sums(gpu, x, dy, &stats.mean);
    let dgamma = gamma_grad(gpu, x, dy, stats, gamma, &sums);
    (dgamma, sums.sum_dy)
}

/// Evaluation-mode gradient of the input (the running statistics are constants).
pub fn backward_eval(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    running_var: &Tensor,
    gamma: &Tensor,
) -> Tensor {
    f32_only("batch_norm backward_eval", &[x, dy, running_var, gamma]);
    let dx = gpu.empty(&x.shape);
    let n = x.numel();
    gpu.dispatch(
        &BN_BACKWARD_EVAL,
        &[("C", rows_c(x).1 as f64)],
        &params(x),
        &[
            dx.raw(),
            x.raw(),
            dy.raw(),
            running_var.raw(),
            running_var.raw(),
            gamma.raw(),
            gamma.raw(),
            gamma.raw(),
        ],
        grid_1d(n),
        (2.0 * n as f64, 2.0 * x.bytes() as f64),
    );
    dx
}

/// The evaluation-mode norm y = (x - mean) / sqrt(var + eps) * gamma + beta as the affine map
/// y = x * scale + shift, packed [scale; shift] (2C, f32) for `conv::forward_affine`. One tiny
/// dispatch, so the parameters never leave the GPU.
pub fn fold(
    gpu: &Gpu,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
) -> Tensor {
    f32_only("batch_norm fold", &[gamma, beta, running_mean, running_var]);
    let c = gamma.numel();
    let out = gpu.empty(&[2 * c]);
    gpu.dispatch(
        &BN_FOLD,
        &[],
        &[c as u32, c as u32, 1, 0, f(EPS), 0, 0, 0],
        &[
            out.raw(),
            gamma.raw(),
            gamma.raw(),
            running_mean.raw(),
            running_var.raw(),
            gamma.raw(),
            beta.raw(),
            beta.raw(),
        ],
        grid_1d(c),
        (4.0 * c as f64, 0.0),
    );
    out
}
