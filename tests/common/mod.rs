//! Shared test helpers: a GPU per test, random data, the relative-error check, central finite
//! differences, and the float64 convolution reference that tests/ops/conv.rs, tests/f16.rs and
//! tests/tune.rs all compare against. Every other op's reference sits with its tests in
//! tests/ops/.
#![allow(dead_code)]

use asna::gpu::{Gpu, Tensor};
use asna::ops::Act;
use std::rc::Rc;

pub fn gpu() -> Rc<Gpu> {
    Gpu::default_adapter().expect("a GPU adapter (lavapipe on CI)")
}

pub struct Rand(pub asna::rng::Rng);

impl Rand {
    pub fn new(seed: u64) -> Self {
        Rand(asna::rng::Rng::new(seed))
    }
    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.0.range(lo, hi) as f32).collect()
    }
    pub fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n).map(|_| (self.0.normal() * std) as f32).collect()
    }
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn download(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.download(t).expect("download")
}

/// Relative L2 error ||got - want|| / max(||want||, 1e-6 sqrt(n)), the golden files' measure.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    num / den.max(1e-6 * (want.len() as f64).sqrt())
}

#[track_caller]
pub fn assert_close(name: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: length {} vs {}",
        got.len(),
        want.len()
    );
    let e = rel_err(got, want);
    let worst = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| (i, (*g as f64 - w).abs()))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    assert!(
        e <= tol && got.iter().all(|v| v.is_finite()),
        "{name}: relative error {e:.3e} > {tol:.1e} (worst at {}: got {} want {})",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

// ------------------------------------------------------------------ CPU references (f64)

pub fn act_ref(x: f64, act: Act) -> f64 {
    match act {
        Act::None => x,
        Act::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                0.5 * x
            }
        }
        Act::Relu => x.max(0.0),
        Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Act::Tanh => x.tanh(),
    }
}

/// TF 'same' padding, written independently of the engine's helper.
pub fn same(input: usize, k: usize, s: usize) -> (usize, usize) {
    let out = (input + s - 1) / s;
    let need = (out - 1) * s + k;
    let total = if need > input { need - input } else { 0 };
    (out, total / 2)
}

/// x [n, h, w, ci], w [kh, kw, ci, co] -> [n, oh, ow, co].
#[allow(clippy::too_many_arguments)]
pub fn conv_ref(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    stride: usize,
    act: Act,
) -> (Vec<f64>, [usize; 4]) {
    let [n, h, wd, ci] = xs;
    let [kh, kw, wci, co] = ws;
    assert_eq!(ci, wci);
    let (oh, pt) = same(h, kh, stride);
    let (ow, pl) = same(wd, kw, stride);
    let mut y = vec![0.0; n * oh * ow * co];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..co {
                    let mut s = b.map_or(0.0, |b| b[o]);
                    for ky in 0..kh {
                        let iy = (oy * stride + ky) as isize - pt as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * stride + kx) as isize - pl as isize;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            for c in 0..ci {
                                s += x[((img * h + iy as usize) * wd + ix as usize) * ci + c]
                                    * w[((ky * kw + kx) * ci + c) * co + o];
                            }
                        }
                    }
                    y[((img * oh + oy) * ow + ox) * co + o] = act_ref(s, act);
                }
            }
        }
    }
    (y, [n, oh, ow, co])
}

/// A convolution's test data: input in [-1, 1], weights in [-0.5, 0.5] and bias in
/// [-bias_range, bias_range], drawn in that order, with their uploads.
pub struct ConvCase {
    pub xs: [usize; 4],
    pub ws: [usize; 4],
    pub stride: usize,
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub xt: Tensor,
    pub wt: Tensor,
    pub bt: Tensor,
}

impl ConvCase {
    pub fn new(
        gpu: &Gpu,
        r: &mut Rand,
        xs: [usize; 4],
        ws: [usize; 4],
        stride: usize,
        bias_range: f64,
    ) -> Self {
        let x = r.vec(xs.iter().product(), -1.0, 1.0);
        let w = r.vec(ws.iter().product(), -0.5, 0.5);
        let b = r.vec(ws[3], -bias_range, bias_range);
        ConvCase {
            xt: gpu.upload(&xs, &x),
            wt: gpu.upload(&ws, &w),
            bt: gpu.upload(&[ws[3]], &b),
            xs,
            ws,
            stride,
            x,
            w,
            b,
        }
    }

    /// The float64 reference of act(conv(x, w) [+ b]) and its shape.
    pub fn reference(&self, bias: bool, act: Act) -> (Vec<f64>, [usize; 4]) {
        conv_ref(
            &f64s(&self.x),
            self.xs,
            &f64s(&self.w),
            self.ws,
            bias.then(|| f64s(&self.b)).as_deref(),
            self.stride,
            act,
        )
    }
}

/// Central differences of a scalar function, in float64.
pub fn fd_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let up = f(&xp);
            xp[i] = orig - eps;
            let down = f(&xp);
            xp[i] = orig;
            (up - down) / (2.0 * eps)
        })
        .collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
