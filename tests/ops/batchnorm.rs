//! Batch normalisation over every axis but channels (src/ops/batchnorm.rs,
//! shaders/batchnorm.wgsl): float64 references of training mode (batch statistics, biased
//! variance) and evaluation mode (running statistics), forward, the running-statistics
//! update, the folded evaluation-mode affine map, and the tape's `BatchNormTrain` and
//! `BatchNormEval` rules (dX, dGamma, dBeta of both).

use crate::*;
use asna::autograd::Tape;
use asna::ops;

/// The epsilon of every batch norm in the model.
const BN_EPS: f64 = 1e-3;

// ------------------------------------------------------------------ float64 references

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

// ------------------------------------------------------------------ forward

#[test]
fn batch_norm_train_and_eval_and_running_update() {
    let gpu = gpu();
    let mut r = Rand::new(23);
    for (xs, c) in [
        ([4usize, 5, 7, 3], 3usize),
        ([2, 9, 9, 1], 1),
        ([6, 1, 16, 16], 16),
    ] {
        let n: usize = xs.iter().product();
        let x = r.vec(n, -2.0, 3.0);
        let gamma = r.vec(c, 0.5, 1.5);
        let beta = r.vec(c, -0.5, 0.5);
        let rm = r.vec(c, -0.1, 0.1);
        let rv = r.vec(c, 1.0, 1.5);
        let (want, mean, var) = bn_train_ref(&f64s(&x), c, &f64s(&gamma), &f64s(&beta), BN_EPS);
        let xt = gpu.upload(&xs, &x);
        let (gt, bt) = (gpu.upload(&[c], &gamma), gpu.upload(&[c], &beta));
        let stats = ops::batchnorm::batch_stats(&gpu, &xt);
        assert_close("bn mean", &download(&gpu, &stats.mean), &mean, 1e-6);
        assert_close("bn var", &download(&gpu, &stats.var), &var, 1e-5);
        let y = ops::batchnorm::normalize(&gpu, &xt, &stats.mean, &stats.var, &gt, &bt);
        assert_close("bn train", &download(&gpu, &y), &want, 1e-5);
        let (rmt, rvt) = (gpu.upload(&[c], &rm), gpu.upload(&[c], &rv));
        let ye = ops::batchnorm::normalize(&gpu, &xt, &rmt, &rvt, &gt, &bt);
        assert_close(
            "bn eval",
            &download(&gpu, &ye),
            &bn_eval_ref(
                &f64s(&x),
                c,
                &f64s(&rm),
                &f64s(&rv),
                &f64s(&gamma),
                &f64s(&beta),
                BN_EPS,
            ),
            1e-6,
        );
        let (nm, nv) = ops::batchnorm::running_update(&gpu, &rmt, &rvt, &stats);
        let want_m: Vec<f64> = (0..c)
            .map(|i| 0.99 * rm[i] as f64 + 0.01 * mean[i])
            .collect();
        let want_v: Vec<f64> = (0..c)
            .map(|i| 0.99 * rv[i] as f64 + 0.01 * var[i])
            .collect();
        assert_close("running mean", &download(&gpu, &nm), &want_m, 1e-6);
        assert_close("running var", &download(&gpu, &nv), &want_v, 1e-6);
    }
}

/// The scoring path's evaluation-mode norm as one affine map per channel, [scale; shift].
#[test]
fn batch_norm_fold_is_the_eval_affine_map() {
    let gpu = gpu();
    let mut r = Rand::new(27);
    for c in [1usize, 5, 32] {
        let (gamma, beta) = (r.vec(c, 0.5, 1.5), r.vec(c, -0.5, 0.5));
        let (rm, rv) = (r.vec(c, -0.2, 0.2), r.vec(c, 0.5, 1.5));
        let folded = ops::batchnorm::fold(
            &gpu,
            &up(&gpu, &[c], &gamma),
            &up(&gpu, &[c], &beta),
            &up(&gpu, &[c], &rm),
            &up(&gpu, &[c], &rv),
        );
        let scale: Vec<f64> = (0..c)
            .map(|i| gamma[i] as f64 / (rv[i] as f64 + BN_EPS).sqrt())
            .collect();
        let shift: Vec<f64> = (0..c)
            .map(|i| beta[i] as f64 - rm[i] as f64 * scale[i])
            .collect();
        let want: Vec<f64> = scale.iter().chain(&shift).copied().collect();
        assert_close(
            &format!("bn fold c{c}"),
            &download(&gpu, &folded),
            &want,
            1e-6,
        );
    }
}

// ------------------------------------------------------------------ backward (tape)

#[test]
fn batch_norm_gradients_train_and_eval() {
    let gpu = gpu();
    let mut r = Rand::new(13);
    for (xs, c) in [([3usize, 3, 5, 4], 4usize), ([2, 1, 7, 1], 1)] {
        let n: usize = xs.iter().product();
        let x = r.vec(n, -2.0, 2.0);
        let g = r.vec(n, -1.0, 1.0);
        let gamma = r.vec(c, 0.5, 1.5);
        let beta = r.vec(c, -0.5, 0.5);
        let (xd, gd, bd) = (f64s(&x), f64s(&gamma), f64s(&beta));

        // Training mode: the gradient flows through the batch statistics.
        let mut tape = Tape::new(&gpu);
        let xv = tape.leaf(up(&gpu, &xs, &x), true);
        let gv = tape.leaf(up(&gpu, &[c], &gamma), true);
        let bv = tape.leaf(up(&gpu, &[c], &beta), true);
        let (y, _) = tape.batch_norm_train(&xv, &gv, &bv);
        backward_with(&mut tape, &y, &g);
        assert_close(
            "bn dX",
            &grad_of(&tape, &xv),
            &fd(|v| bn_train_ref(v, c, &gd, &bd, BN_EPS).0, &x, &g),
            TOL,
        );
        assert_close(
            "bn dGamma",
            &grad_of(&tape, &gv),
            &fd(|v| bn_train_ref(&xd, c, v, &bd, BN_EPS).0, &gamma, &g),
            TOL,
        );
        assert_close(
            "bn dBeta",
            &grad_of(&tape, &bv),
            &fd(|v| bn_train_ref(&xd, c, &gd, v, BN_EPS).0, &beta, &g),
            TOL,
        );

        // Evaluation mode (the frozen sorter): running statistics are constants.
        let rm = r.vec(c, -0.2, 0.2);
        let rv = r.vec(c, 0.5, 1.5);
        let (rmd, rvd) = (f64s(&rm), f64s(&rv));
        let mut tape = Tape::new(&gpu);
        let xv = tape.leaf(up(&gpu, &xs, &x), true);
        let gv = tape.leaf(up(&gpu, &[c], &gamma), true);
        let bv = tape.leaf(up(&gpu, &[c], &beta), true);
        let y = tape.batch_norm_eval(&xv, &gv, &bv, &up(&gpu, &[c], &rm), &up(&gpu, &[c], &rv));
        backward_with(&mut tape, &y, &g);
        assert_close(
            "bn eval dX",
            &grad_of(&tape, &xv),
            &fd(|v| bn_eval_ref(v, c, &rmd, &rvd, &gd, &bd, BN_EPS), &x, &g),
            TOL,
        );
        assert_close(
            "bn eval dGamma",
            &grad_of(&tape, &gv),
            &fd(
                |v| bn_eval_ref(&xd, c, &rmd, &rvd, v, &bd, BN_EPS),
                &gamma,
                &g,
            ),
            TOL,
        );
        assert_close(
            "bn eval dBeta",
            &grad_of(&tape, &bv),
            &fd(
                |v| bn_eval_ref(&xd, c, &rmd, &rvd, &gd, v, BN_EPS),
                &beta,
                &g,
            ),
            TOL,
        );

        // Frozen parameters: only dX is computed.
        let mut tape = Tape::new(&gpu);
        let xv = tape.leaf(up(&gpu, &xs, &x), true);
        let gv = tape.leaf(up(&gpu, &[c], &gamma), false);
        let bv = tape.leaf(up(&gpu, &[c], &beta), false);
        let y = tape.batch_norm_eval(&xv, &gv, &bv, &up(&gpu, &[c], &rm), &up(&gpu, &[c], &rv));
        backward_with(&mut tape, &y, &g);
        assert_close(
            "frozen bn eval dX",
            &grad_of(&tape, &xv),
            &fd(|v| bn_eval_ref(v, c, &rmd, &rvd, &gd, &bd, BN_EPS), &x, &g),
            TOL,
        );
        assert!(tape.grad(&gv).is_none() && tape.grad(&bv).is_none());
    }
}
