//! The GPU ops, one file per op family of src/ops/ (one test binary, since each links wgpu).
//! Each file holds its family's float64 CPU reference, the forward kernels against it on
//! awkward shapes (odd sizes, one channel, 1x1 images, every stride and padding case the model
//! uses, batch 1 and > 1), the backward through the tape (every rule of its `match`) against
//! float64 central finite differences of the reference, and the kernel variants. `tape.rs`
//! covers the tape's own mechanics.

#[path = "../common/mod.rs"]
mod common;

mod adam;
mod batchnorm;
mod concat;
mod conv;
mod eltwise;
mod image;
mod loss;
mod pool;
mod quality;
mod reduce;
mod tape;

use asna::autograd::{Tape, Var};
use asna::gpu::{Gpu, Tensor};
use common::*;

/// Step of the central differences (float64, so truncation and rounding both stay tiny).
const EPS: f64 = 1e-6;
/// Relative L2 error allowed between an f32 gradient and the float64 finite differences.
const TOL: f64 = 2e-4;

/// FD gradient of sum(F(x) * g) with respect to x: what a backward rule returns for the
/// cotangent g.
fn fd(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f32], g: &[f32]) -> Vec<f64> {
    let g = f64s(g);
    fd_grad(|xx| dot(&f(xx), &g), &f64s(x), EPS)
}

fn up(gpu: &Gpu, shape: &[usize], v: &[f32]) -> Tensor {
    gpu.upload(shape, v)
}

/// Runs the tape backward from `out` with the cotangent `g` (of `out`'s size).
fn backward_with(tape: &mut Tape, out: &Var, g: &[f32]) {
    let dy = tape.gpu.upload(&out.t.shape, g);
    tape.backward_from(out, dy);
}

/// The gradient that reached `v`, downloaded.
#[track_caller]
fn grad_of(tape: &Tape, v: &Var) -> Vec<f32> {
    let g = tape
        .grad(v)
        .unwrap_or_else(|| panic!("no gradient reached the value of shape {:?}", v.t.shape));
    download(tape.gpu, g)
}
