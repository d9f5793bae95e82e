//! Element-wise ops and their gradients: activations, sums, broadcast products, the Siamese
//! absolute difference, PReLU and batch slices.
//!
//! Shader: shaders/eltwise.wgsl · Reference and tests: tests/ops/eltwise.rs · Gradient rules:
//! `Activation`, `Prelu`, `Mul`, `Axpby`, `AbsDiffHalves`, `SliceBatch` in src/autograd/mod.rs

use super::{kernel, kernel_f16, reduce, same_dtype, Act, R, RW};
use crate::gpu::{f, grid_1d, DType, Gpu, Kernel, Tensor};

// The ops of the scoring forward pass also run on f16 tensors; the rest are f32 only.
const ACT_FORWARD: Kernel = kernel_f16("eltwise.wgsl", "act_forward", &[RW, R, R, R]);
const ACT_BACKWARD: Kernel = kernel("eltwise.wgsl", "act_backward", &[RW, R, R, R]);
const AXPBY: Kernel = kernel_f16("eltwise.wgsl", "axpby", &[RW, R, R, R]);
const ACT_BACKWARD4: Kernel = kernel("eltwise.wgsl", "act_backward4", &[RW, R, R, R]);
const AXPBY4: Kernel = kernel("eltwise.wgsl", "axpby4", &[RW, R, R, R]);
const SCALE_BY_SCALAR: Kernel = kernel("eltwise.wgsl", "scale_by_scalar", &[RW, R, R, R]);
const FILL_FROM_SCALAR: Kernel = kernel("eltwise.wgsl", "fill_from_scalar", &[RW, R, R, R]);
const MUL: Kernel = kernel_f16("eltwise.wgsl", "mul", &[RW, R, R, R]);
const ABSDIFF: Kernel = kernel_f16("eltwise.wgsl", "absdiff_halves", &[RW, R, R, R]);
const ABSDIFF_BACKWARD: Kernel = kernel("eltwise.wgsl", "absdiff_halves_backward", &[RW, R, R, R]);
const PRELU_FORWARD: Kernel = kernel("eltwise.wgsl", "prelu_forward", &[RW, R, R, R]);
const PRELU_BACKWARD: Kernel = kernel("eltwise.wgsl", "prelu_backward", &[RW, R, R, R]);
const SLICE: Kernel = kernel_f16("eltwise.wgsl", "slice", &[RW, R, R, R]);
const UNSLICE: Kernel = kernel("eltwise.wgsl", "unslice", &[RW, R, R, R]);

#[derive(Default, Clone, Copy)]
struct P {
    n: usize,
    c: usize,
    hw: usize,
    op: u32,
    off: usize,
    len: usize,
    alpha: f32,
    beta: f32,
}

impl P {
    fn words(&self) -> [u32; 8] {
        [
            self.n as u32,
            self.c as u32,
            self.hw as u32,
            self.op,
            self.off as u32,
            self.len as u32,
            f(self.alpha),
            f(self.beta),
        ]
    }
}

/// `vec4` (four elements an invocation) for f32 tensors whose size is a multiple of 4, else
/// `scalar`; with the threads to launch.
fn by_vec4<'k>(x: &Tensor, scalar: &'k Kernel, vec4: &'k Kernel) -> (&'k Kernel, usize) {
    if x.dtype == DType::F32 && x.numel() % 4 == 0 {
        (vec4, x.numel() / 4)
    } else {
        (scalar, x.numel())
    }
}

fn run(
    gpu: &Gpu,
    k: &Kernel,
    p: P,
    out: &Tensor,
    a: &Tensor,
    b: Option<&Tensor>,
    c: Option<&Tensor>,
    threads: usize,
) {
    let bb = b.unwrap_or(a);
    let cc = c.unwrap_or(a);
    let dtype = same_dtype(k.entry, &[out, a, bb, cc]);
    let bytes = (out.bytes() + a.bytes()) as f64;
    gpu.dispatch_as(
        k,
        dtype,
        &[],
        &p.words(),
        &[out.raw(), a.raw(), bb.raw(), cc.raw()],
        grid_1d(threads),
        (threads as f64, bytes),
    );
}

pub fn activation(gpu: &Gpu, x: &Tensor, act: Act) -> Tensor {
    let out = gpu.empty_as(&x.shape, x.dtype);
    run(
        gpu,
        &ACT_FORWARD,
        P {
            n: x.numel(),
            op: act as u32,
            ..Default::default()
        },
        &out,
        x,
        None,
        None,
        x.numel(),
    );
    out
}

/// dX = dY * act'(x), with the derivative taken from the activation's output y.
pub fn activation_backward(gpu: &Gpu, y: &Tensor, dy: &Tensor, act: Act) -> Tensor {
    if act == Act::None {
        return dy.clone();
    }
    let out = gpu.empty_as(&y.shape, y.dtype);
    let (kernel, threads) = by_vec4(y, &ACT_BACKWARD, &ACT_BACKWARD4);
    run(
        gpu,
        kernel,
        P {
            n: y.numel(),
            op: act as u32,
            ..Default::default()
        },
        &out,
        y,
        Some(dy),
        None,
        threads,
    );
    out
}

/// alpha * a + beta * b (same shapes).
pub fn axpby(gpu: &Gpu, alpha: f32, a: &Tensor, beta: f32, b: &Tensor) -> Tensor {
    assert_eq!(
        a.numel(),
        b.numel(),
        "axpby: {:?} vs {:?}",
        a.shape,
        b.shape
    );
    let out = gpu.empty_as(&a.shape, a.dtype);
    let (kernel, threads) = by_vec4(a, &AXPBY, &AXPBY4);
    run(
        gpu,
        kernel,
        P {
            n: a.numel(),
            alpha,
            beta,
            ..Default::default()
        },
        &out,
        a,
        Some(b),
        None,
        threads,
    );
    out
}

pub fn add(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    axpby(gpu, 1.0, a, 1.0, b)
}

pub fn scale(gpu: &Gpu, a: &Tensor, s: f32) -> Tensor {
    axpby(gpu, s, a, 0.0, a)
}

/// `alpha * a * g[0]`, for g a 1-element tensor on the GPU.
pub fn scale_by_scalar(gpu: &Gpu, a: &Tensor, alpha: f32, g: &Tensor) -> Tensor {
    let out = gpu.empty_as(&a.shape, a.dtype);
    run(
        gpu,
        &SCALE_BY_SCALAR,
        P {
            n: a.numel(),
            alpha,
            ..Default::default()
        },
        &out,
        a,
        Some(g),
        None,
        a.numel(),
    );
    out
}

/// A tensor of `shape` filled with `alpha * g[0]`.
pub fn fill_from_scalar(gpu: &Gpu, shape: &[usize], alpha: f32, g: &Tensor) -> Tensor {
    let out = gpu.empty_as(shape, g.dtype);
    let n = out.numel();
    run(
        gpu,
        &FILL_FROM_SCALAR,
        P {
            n,
            alpha,
            ..Default::default()
        },
        &out,
        g,
        Some(g),
        None,
        n,
    );
    out
}

/// a * b where b has a's shape, or b is [N, 1, 1, C] broadcast over a [N, H, W, C].
pub fn mul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    let out = gpu.empty_as(&a.shape, a.dtype);
    let (n, h, w, c) = a.nhwc();
    let broadcast = b.numel() != a.numel();
    if broadcast {
        assert_eq!(
            b.shape,
            vec![n, 1, 1, c],
            "mul: cannot broadcast {:?} to {:?}",
            b.shape,
            a.shape
        );
    }
    let p = P {
        n: a.numel(),
        c,
        hw: h * w,
        op: broadcast as u32,
        ..Default::default()
    };
    run(gpu, &MUL, p, &out, a, Some(b), None, a.numel());
    out
}

/// Gradients of a * b: (dY * b, dY * a summed to b's shape).
pub fn mul_backward(gpu: &Gpu, a: &Tensor, b: &Tensor, dy: &Tensor) -> (Tensor, Tensor) {
    super::f32_only("mul backward", &[a, b, dy]);
    let da = mul(gpu, dy, b);
    let db = if b.numel() == a.numel() {
        mul(gpu, dy, a)
    } else {
        let (n, h, w, c) = a.nhwc();
        reduce::gradient_columns(
            gpu,
            &dy.reshape(&[n, h * w, c]),
            reduce::Summand::Product,
            Some(&a.reshape(&[n, h * w, c])),
            None,
            1.0,
        )
        .reshape(&b.shape)
    };
    (da, db)
}

/// `|x[:N] - x[N:]|` of a stacked batch `[R; D]` of 2N images.
pub fn absdiff_halves(gpu: &Gpu, x: &Tensor) -> Tensor {
    let mut shape = x.shape.clone();
    assert!(shape[0] % 2 == 0, "absdiff_halves needs an even batch");
    shape[0] /= 2;
    let out = gpu.empty_as(&shape, x.dtype);
    let len = out.numel();
    run(
        gpu,
        &ABSDIFF,
        P {
            n: x.numel(),
            len,
            ..Default::default()
        },
        &out,
        x,
        None,
        None,
        len,
    );
    out
}

pub fn absdiff_halves_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor) -> Tensor {
    let out = gpu.empty_as(&x.shape, x.dtype);
    let len = dy.numel();
    run(
        gpu,
        &ABSDIFF_BACKWARD,
        P {
            n: x.numel(),
            len,
            ..Default::default()
        },
        &out,
        x,
        Some(dy),
        None,
        len,
    );
    out
}

/// PReLU with one alpha per channel (the last axis).
pub fn prelu(gpu: &Gpu, x: &Tensor, alpha: &Tensor) -> Tensor {
    let out = gpu.empty_as(&x.shape, x.dtype);
    let c = x.channels();
    assert_eq!(alpha.numel(), c, "prelu: one alpha per channel");
    run(
        gpu,
        &PRELU_FORWARD,
        P {
            n: x.numel(),
            c,
            ..Default::default()
        },
        &out,
        x,
        Some(alpha),
        None,
        x.numel(),
    );
    out
}

/// (dX, dAlpha) of PReLU.
pub fn prelu_backward(gpu: &Gpu, x: &Tensor, alpha: &Tensor, dy: &Tensor) -> (Tensor, Tensor) {
    let c = x.channels();
    let dx = gpu.empty_as(&x.shape, x.dtype);
    run(
        gpu,
        &PRELU_BACKWARD,
        P {
            n: x.numel(),
            c,
            ..Default::default()
        },
        &dx,
        x,
        Some(dy),
        Some(alpha),
        x.numel(),
    );
    let rows = x.numel() / c;
    let da = reduce::gradient_columns(
        gpu,
        &dy.reshape(&[1, rows, c]),
        reduce::Summand::ProductWhereNegative,
        Some(&x.reshape(&[1, rows, c])),
        None,
        1.0,
    )
    .reshape(&[c]);
    (dx, da)
}

/// Items [start, start + count) along the outermost axis.
pub fn slice_batch(gpu: &Gpu, x: &Tensor, start: usize, count: usize) -> Tensor {
    let mut shape = x.shape.clone();
    let item = x.numel() / shape[0];
    shape[0] = count;
    let out = gpu.empty_as(&shape, x.dtype);
    let n = out.numel();
    run(
        gpu,
        &SLICE,
        P {
            n,
            off: start * item,
            ..Default::default()
        },
        &out,
        x,
        None,
        None,
        n,
    );
    out
}

/// The adjoint of `slice_batch`: dy placed at items [start, start + count) of zeros of `full`.
pub fn unslice_batch(gpu: &Gpu, dy: &Tensor, full: &[usize], start: usize) -> Tensor {
    let out = gpu.empty_as(full, dy.dtype);
    let item = out.numel() / full[0];
    let n = out.numel();
    run(
        gpu,
        &UNSLICE,
        P {
            n,
            off: start * item,
            len: dy.numel(),
            ..Default::default()
        },
        &out,
        dy,
        None,
        None,
        n,
    );
    out
}
