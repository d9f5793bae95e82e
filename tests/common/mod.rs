//! Shared test helpers: a GPU per test, random data, float64 CPU references of every op, and
//! central finite differences.
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

pub fn maxpool_ref(x: &[f64], [n, h, w, c]: [usize; 4]) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0; n * oh * ow * c];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let at = |yy: usize, xx: usize| x[((img * h + yy) * w + xx) * c + ch];
                    let m = at(2 * oy, 2 * ox)
                        .max(at(2 * oy, 2 * ox + 1))
                        .max(at(2 * oy + 1, 2 * ox))
                        .max(at(2 * oy + 1, 2 * ox + 1));
                    y[((img * oh + oy) * ow + ox) * c + ch] = m;
                }
            }
        }
    }
    y
}

pub fn upsample_ref(x: &[f64], [n, h, w, c]: [usize; 4]) -> Vec<f64> {
    let mut y = vec![0.0; n * 4 * h * w * c];
    for img in 0..n {
        for yy in 0..2 * h {
            for xx in 0..2 * w {
                for ch in 0..c {
                    y[((img * 2 * h + yy) * 2 * w + xx) * c + ch] =
                        x[((img * h + yy / 2) * w + xx / 2) * c + ch];
                }
            }
        }
    }
    y
}

/// Training-mode batch norm over rows of [rows, c]: (y, mean, biased var).
pub fn bn_train_ref(
    x: &[f64],
    c: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / c;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for r in 0..rows {
        for ch in 0..c {
            mean[ch] += x[r * c + ch] / rows as f64;
        }
    }
    for r in 0..rows {
        for ch in 0..c {
            var[ch] += (x[r * c + ch] - mean[ch]).powi(2) / rows as f64;
        }
    }
    let y = (0..x.len()).map(|i| {
        let ch = i % c;
        (x[i] - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
    });
    (y.collect(), mean, var)
}

pub fn bn_eval_ref(
    x: &[f64],
    c: usize,
    rm: &[f64],
    rv: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let ch = i % c;
            (x[i] - rm[ch]) / (rv[ch] + eps).sqrt() * gamma[ch] + beta[ch]
        })
        .collect()
}

pub fn pearson_ref(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let sab: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let saa: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let sbb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    sab / (saa * sbb).sqrt()
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
