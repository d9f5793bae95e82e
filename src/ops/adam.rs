//! Adam on the GPU, in place on a parameter and its moments.
//!
//! Shader: shaders/adam.wgsl · Reference and tests: tests/ops/adam.rs

use super::{kernel, R, RW};
use crate::gpu::{f, grid_1d, Gpu, Kernel, Tensor};

const ADAM: Kernel = kernel("adam.wgsl", "adam_step", &[RW, RW, RW, R]);

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        }
    }
}

/// One step t (1-based) for one parameter: updates `param`, `m` and `v` in place.
pub fn step(
    gpu: &Gpu,
    cfg: &AdamConfig,
    lr: f32,
    t: u64,
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
) {
    let n = param.numel();
    assert!(
        m.numel() == n && v.numel() == n && grad.numel() == n,
        "adam: shapes differ"
    );
    let bc1 = 1.0 - (cfg.beta1 as f64).powi(t as i32);
    let bc2 = 1.0 - (cfg.beta2 as f64).powi(t as i32);
    let p = [
        n as u32,
        0,
        0,
        0,
        f(lr),
        f(cfg.beta1),
        f(cfg.beta2),
        f(cfg.eps),
        f(bc1 as f32),
        f(bc2 as f32),
        0,
        0,
    ];
    super::f32_only("adam", &[param, m, v, grad]);
    gpu.dispatch(
        &ADAM,
        &[],
        &p,
        &[param.raw(), m.raw(), v.raw(), grad.raw()],
        grid_1d(n),
        (10.0 * n as f64, 16.0 * n as f64),
    );
}
