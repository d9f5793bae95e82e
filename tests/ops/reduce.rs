//! Reductions (src/ops/reduce.rs, shaders/reduce.wgsl): column sums in one or two passes,
//! totals, and the tape's two reductions: `MeanHw` (the channel attention's spatial mean) and
//! `SumSquares` (the L2 term), each against a float64 reference.

use crate::*;
use asna::autograd::Tape;
use asna::ops;

// ------------------------------------------------------------------ float64 references

/// Scaled sum over the rows of each group of a [groups, rows, c] tensor: [groups, c].
pub fn columns_ref(x: &[f64], [groups, rows, c]: [usize; 3], scale: f64) -> Vec<f64> {
    (0..groups * c)
        .map(|i| {
            let (g, ch) = (i / c, i % c);
            scale * (0..rows).map(|r| x[(g * rows + r) * c + ch]).sum::<f64>()
        })
        .collect()
}

/// Mean over H x W of [N, H, W, C]: [N, C].
pub fn mean_hw_ref(x: &[f64], [n, h, w, c]: [usize; 4]) -> Vec<f64> {
    columns_ref(x, [n, h * w, c], 1.0 / (h * w) as f64)
}

pub fn sum_squares_ref(x: &[f64], scale: f64) -> f64 {
    scale * x.iter().map(|t| t * t).sum::<f64>()
}

// ------------------------------------------------------------------ forward

type ColumnSum = fn(
    &asna::gpu::Gpu,
    &asna::gpu::Tensor,
    ops::reduce::Summand,
    Option<&asna::gpu::Tensor>,
    Option<&asna::gpu::Tensor>,
    f32,
) -> asna::gpu::Tensor;

#[test]
fn reductions_large_and_small() {
    let gpu = gpu();
    let mut r = Rand::new(24);
    // Many rows (two passes) and few rows (one pass); spatial mean per image. Both the
    // forward's sums and the gradients' longer runs per thread.
    let cases = [
        (1usize, 70001usize, 3usize),
        (1, 5000, 16),
        (3, 49, 8),
        (2, 1, 5),
    ];
    for (g, rows, c) in cases {
        let x = r.vec(g * rows * c, -1.0, 1.0);
        let xt = gpu.upload(&[g, rows, c], &x);
        let want = columns_ref(&f64s(&x), [g, rows, c], 1.0 / rows as f64);
        for (what, sum) in [
            ("column mean", ops::reduce::columns as ColumnSum),
            ("gradient column mean", ops::reduce::gradient_columns),
        ] {
            let m = sum(
                &gpu,
                &xt,
                ops::reduce::Summand::Value,
                None,
                None,
                1.0 / rows as f32,
            );
            assert_close(what, &download(&gpu, &m), &want, 1e-5);
        }
    }
    let x = r.vec(1000, -1.0, 1.0);
    let s = ops::reduce::total(&gpu, &gpu.upload(&[1000], &x), ops::reduce::Summand::Square);
    assert_close(
        "squared norm",
        &download(&gpu, &s),
        &[sum_squares_ref(&f64s(&x), 1.0)],
        1e-6,
    );
}

/// Every summand of the column sums against float64, for the forward's statistics and the
/// gradients' longer runs, on 3, 4, 5 and 12 columns, with a second pass where the rows exceed
/// one workgroup's.
#[test]
fn every_summand_of_the_column_sums() {
    use ops::reduce::Summand;
    let gpu = gpu();
    let mut r = Rand::new(31);
    for (g, rows, c) in [
        (2usize, 37usize, 4usize),
        (1, 9000, 12),
        (3, 21, 5),
        (1, 20000, 3),
    ] {
        let x = r.vec(g * rows * c, -1.0, 1.0);
        let y = r.vec(g * rows * c, -1.0, 1.0);
        let m = r.vec(c, -0.5, 0.5);
        let (xt, yt, mt) = (
            gpu.upload(&[g, rows, c], &x),
            gpu.upload(&[g, rows, c], &y),
            gpu.upload(&[c], &m),
        );
        let summands = [
            Summand::Value,
            Summand::SquaredDeviation,
            Summand::Product,
            Summand::ProductWithDeviation,
            Summand::Square,
            Summand::ProductWhereNegative,
        ];
        for summand in summands {
            let term = |i: usize, col: usize| -> f64 {
                let (v, u, mc) = (x[i] as f64, y[i] as f64, m[col] as f64);
                match summand {
                    Summand::Value => v,
                    Summand::SquaredDeviation => (v - mc) * (v - mc),
                    Summand::Product => v * u,
                    Summand::ProductWithDeviation => v * (u - mc),
                    Summand::Square => v * v,
                    Summand::ProductWhereNegative => {
                        if u < 0.0 {
                            v * u
                        } else {
                            0.0
                        }
                    }
                }
            };
            let scale = 0.75f32;
            let mut want = vec![0.0; g * c];
            for gi in 0..g {
                for row in 0..rows {
                    for col in 0..c {
                        want[gi * c + col] += scale as f64 * term((gi * rows + row) * c + col, col);
                    }
                }
            }
            for (what, sum) in [
                ("column sums", ops::reduce::columns as ColumnSum),
                ("gradient column sums", ops::reduce::gradient_columns),
            ] {
                let got = sum(&gpu, &xt, summand, Some(&yt), Some(&mt), scale);
                assert_close(
                    &format!("{what} {summand:?} [{g}, {rows}, {c}]"),
                    &download(&gpu, &got),
                    &want,
                    1e-5,
                );
            }
        }
    }
}

// ------------------------------------------------------------------ backward (tape)

/// Spatial mean through the tape (its gradient spreads dY over H x W), composed as the
/// attention uses it: a product with a gate, then a scaled sum of squares as the root.
#[test]
fn mean_hw_gradient_through_the_tape() {
    let gpu = gpu();
    let mut r = Rand::new(12);
    let xs = [2usize, 3, 5, 4];
    let x = r.vec(xs.iter().product(), -2.0, 2.0);
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &xs, &x), true);
    let m = tape.mean_hw(&xv);
    assert_eq!(m.shape(), &[2, 1, 1, 4]);
    assert_close(
        "mean_hw",
        &download(&gpu, &m.t),
        &mean_hw_ref(&f64s(&x), xs),
        1e-6,
    );
    let gm = r.vec(8, -1.0, 1.0);
    let c = tape.leaf(up(&gpu, &[2, 1, 1, 4], &gm), false);
    let prod = tape.mul(&m, &c);
    let root = tape.sum_squares(&prod, 0.5);
    tape.backward(&root);
    let want = fd_grad(
        |v| {
            mean_hw_ref(v, xs)
                .iter()
                .zip(&gm)
                .map(|(a, b)| 0.5 * (a * *b as f64).powi(2))
                .sum()
        },
        &f64s(&x),
        EPS,
    );
    assert_close("mean_hw dX (tape)", &grad_of(&tape, &xv), &want, TOL);
}

/// scale * sum(x^2), the L2 term, with the loss's upstream gradient: scale 1 (one kernel)
/// and the L2 factor (a second, scaling kernel).
#[test]
fn sum_squares_forward_and_gradient() {
    let gpu = gpu();
    let mut r = Rand::new(14);
    let up_g = 0.7f32;
    for n in [16usize, 7, 300] {
        let a = r.vec(n, -2.0, 2.0);
        for scale in [1e-4, 1.0] {
            let mut tape = Tape::new(&gpu);
            let av = tape.leaf(up(&gpu, &[n], &a), true);
            let s = tape.sum_squares(&av, scale as f32);
            assert_close(
                &format!("sum of squares x{scale}"),
                &download(&gpu, &s.t),
                &[sum_squares_ref(&f64s(&a), scale)],
                1e-6,
            );
            backward_with(&mut tape, &s, &[up_g]);
            assert_close(
                &format!("sum of squares x{scale} dX"),
                &grad_of(&tape, &av),
                &fd(|v| vec![sum_squares_ref(v, scale)], &a, &[up_g]),
                TOL,
            );
        }
    }
}
