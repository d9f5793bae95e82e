//! Loss terms over a batch of scores (src/ops/loss.rs, shaders/loss.wgsl): mean squared and
//! absolute errors and the clamped Pearson term 1 - r^2, float64 references, forward, and the
//! tape's `Mse`, `Mae` and `PearsonTerm` rules (the L2 term is in reduce.rs).

use crate::*;
use asna::autograd::Tape;
use asna::ops;

// ------------------------------------------------------------------ float64 references

pub fn pearson_ref(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let sab: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let saa: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let sbb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    sab / (saa * sbb).sqrt()
}

pub fn mse_ref(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / a.len() as f64
}

pub fn mae_ref(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).sum::<f64>() / a.len() as f64
}

/// 1 - clamp(r, -1, 1)^2.
pub fn pearson_term_ref(a: &[f64], b: &[f64]) -> f64 {
    let r = pearson_ref(a, b).clamp(-1.0, 1.0);
    1.0 - r * r
}

// ------------------------------------------------------------------ forward

#[test]
fn losses_forward() {
    let gpu = gpu();
    let mut r = Rand::new(25);
    let a = r.vec(16, -2.0, 2.0);
    let b = r.vec(16, -2.0, 2.0);
    let (at, bt) = (gpu.upload(&[16], &a), gpu.upload(&[16], &b));
    let (ad, bd) = (f64s(&a), f64s(&b));
    assert_close(
        "mse",
        &download(&gpu, &ops::loss::mse(&gpu, &at, &bt)),
        &[mse_ref(&ad, &bd)],
        1e-6,
    );
    assert_close(
        "mae",
        &download(&gpu, &ops::loss::mae(&gpu, &at, &bt)),
        &[mae_ref(&ad, &bd)],
        1e-6,
    );
    let rr = pearson_ref(&ad, &bd);
    assert_close(
        "pearson",
        &download(&gpu, &ops::loss::pearson_term(&gpu, &at, &bt)),
        &[1.0 - rr * rr],
        1e-5,
    );
}

// ------------------------------------------------------------------ backward (tape)

/// Each term on batches of 16 (the loss's), 7 and 300 scores, with an upstream gradient
/// other than 1 (the term's weight in the loss).
#[test]
fn loss_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(14);
    let scale = [0.7f32];
    for n in [16usize, 7, 300] {
        let a = r.vec(n, -2.0, 2.0);
        let b = r.vec(n, -2.0, 2.0);
        let (ad, bd) = (f64s(&a), f64s(&b));

        // MSE: both sides may be differentiable (dB = -dA).
        let mut tape = Tape::new(&gpu);
        let av = tape.leaf(up(&gpu, &[n], &a), true);
        let bv = tape.leaf(up(&gpu, &[n], &b), true);
        let l = tape.mse(&av, &bv);
        backward_with(&mut tape, &l, &scale);
        assert_close(
            "mse dA",
            &grad_of(&tape, &av),
            &fd(|v| vec![mse_ref(v, &bd)], &a, &scale),
            TOL,
        );
        assert_close(
            "mse dB",
            &grad_of(&tape, &bv),
            &fd(|v| vec![mse_ref(&ad, v)], &b, &scale),
            TOL,
        );

        // MAE and the Pearson term take a constant target.
        let mut tape = Tape::new(&gpu);
        let av = tape.leaf(up(&gpu, &[n], &a), true);
        let bv = tape.leaf(up(&gpu, &[n], &b), false);
        let l = tape.mae(&av, &bv);
        backward_with(&mut tape, &l, &scale);
        assert_close(
            "mae dA",
            &grad_of(&tape, &av),
            &fd(|v| vec![mae_ref(v, &bd)], &a, &scale),
            TOL,
        );

        let mut tape = Tape::new(&gpu);
        let av = tape.leaf(up(&gpu, &[n], &a), true);
        let bv = tape.leaf(up(&gpu, &[n], &b), false);
        let l = tape.pearson_term(&av, &bv);
        backward_with(&mut tape, &l, &scale);
        assert_close(
            "pearson dA",
            &grad_of(&tape, &av),
            &fd(|v| vec![pearson_term_ref(v, &bd)], &a, &scale),
            TOL,
        );
    }
}
