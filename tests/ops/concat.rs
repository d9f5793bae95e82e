//! Concatenation along channels and its adjoint, the split (src/ops/concat.rs,
//! shaders/concat.wgsl): float64 reference, forward, the tape's `Concat` rule, and the scoring
//! path's fused decoder input (upsample, Siamese difference and concatenation in one pass).

use crate::*;
use asna::autograd::Tape;
use asna::ops;

// ------------------------------------------------------------------ float64 reference

/// Channel concatenation of NHWC tensors with the same rows, given each part's channels.
pub fn concat_ref(parts: &[(&[f64], usize)]) -> Vec<f64> {
    let rows = parts[0].0.len() / parts[0].1;
    let mut y = Vec::new();
    for row in 0..rows {
        for (p, c) in parts {
            y.extend_from_slice(&p[row * c..(row + 1) * c]);
        }
    }
    y
}

// ------------------------------------------------------------------ forward

#[test]
fn concat_and_split() {
    let gpu = gpu();
    let mut r = Rand::new(21);
    let (a, b) = (r.vec(2 * 3 * 5 * 4, -1.0, 1.0), r.vec(2 * 3 * 5, -1.0, 1.0));
    let at = gpu.upload(&[2, 3, 5, 4], &a);
    let bt = gpu.upload(&[2, 3, 5, 1], &b);
    let c = ops::concat::concat(&gpu, &[&at, &bt]);
    assert_eq!(c.shape, vec![2, 3, 5, 5]);
    let want = concat_ref(&[(&f64s(&a)[..], 4), (&f64s(&b)[..], 1)]);
    assert_close("concat", &download(&gpu, &c), &want, 0.0);
    let parts = ops::concat::split(&gpu, &c, &[4, 1]);
    assert_close("split a", &download(&gpu, &parts[0]), &f64s(&a), 0.0);
    assert_close("split b", &download(&gpu, &parts[1]), &f64s(&b), 0.0);
}

/// The scoring path's fused decoder input equals upsample, Siamese difference and
/// concatenation done one by one on the reference (odd channel counts, batch 1 and 3, and
/// the four-channel kernel on channel counts that are multiples of 4).
#[test]
fn fused_upsample_absdiff_concat() {
    let gpu = gpu();
    let mut r = Rand::new(41);
    for (n, lh, lw, c1, c2) in [
        (1, 1, 1, 1, 1),
        (3, 5, 3, 7, 3),
        (2, 4, 6, 16, 8),
        (3, 3, 5, 4, 12),
        (1, 2, 2, 8, 6),
    ] {
        let ls = [n, lh, lw, c1];
        let fs = [2 * n, 2 * lh, 2 * lw, c2];
        let low = r.vec(ls.iter().product(), -1.0, 1.0);
        let feats = r.vec(fs.iter().product(), -1.0, 1.0);
        let (h, w) = (2 * lh, 2 * lw);
        let want = concat_ref(&[
            (&crate::pool::upsample_ref(&f64s(&low), ls)[..], c1),
            (&crate::eltwise::absdiff_halves_ref(&f64s(&feats))[..], c2),
        ]);
        let y = ops::concat::upsample_absdiff_concat(
            &gpu,
            &gpu.upload(&ls, &low),
            &gpu.upload(&fs, &feats),
        );
        assert_eq!(y.shape, vec![n, h, w, c1 + c2]);
        assert_close(
            &format!("fused decoder input {ls:?} {fs:?}"),
            &download(&gpu, &y),
            &want,
            1e-7,
        );
    }
}

// ------------------------------------------------------------------ backward (tape)

/// The `Concat` rule splits dY (the adjoint of concatenation) among the parts, including the
/// attention block's three-way concatenation with one constant part.
#[test]
fn concat_split_is_the_adjoint() {
    let gpu = gpu();
    let mut r = Rand::new(11);
    let g = r.vec(2 * 3 * 3 * 7, -1.0, 1.0);
    let a = r.vec(2 * 3 * 3 * 4, -1.0, 1.0);
    let b = r.vec(2 * 3 * 3 * 3, -1.0, 1.0);
    let mut tape = Tape::new(&gpu);
    let av = tape.leaf(up(&gpu, &[2, 3, 3, 4], &a), true);
    let bv = tape.leaf(up(&gpu, &[2, 3, 3, 3], &b), true);
    let y = tape.concat(&[&av, &bv]);
    assert_eq!(y.shape(), &[2, 3, 3, 7]);
    backward_with(&mut tape, &y, &g);
    let (ad, bd) = (f64s(&a), f64s(&b));
    assert_close(
        "concat dA",
        &grad_of(&tape, &av),
        &fd(|aa| concat_ref(&[(aa, 4), (&bd[..], 3)]), &a, &g),
        TOL,
    );
    assert_close(
        "concat dB",
        &grad_of(&tape, &bv),
        &fd(|bb| concat_ref(&[(&ad[..], 4), (bb, 3)]), &b, &g),
        TOL,
    );

    // Three parts, one channel each side of a wide one, the middle one constant.
    let (p, q, s) = (
        r.vec(5 * 3, -1.0, 1.0),
        r.vec(5 * 3 * 8, -1.0, 1.0),
        r.vec(5 * 3, -1.0, 1.0),
    );
    let g = r.vec(5 * 3 * 10, -1.0, 1.0);
    let mut tape = Tape::new(&gpu);
    let pv = tape.leaf(up(&gpu, &[1, 5, 3, 1], &p), true);
    let qv = tape.leaf(up(&gpu, &[1, 5, 3, 8], &q), false);
    let sv = tape.leaf(up(&gpu, &[1, 5, 3, 1], &s), true);
    let y = tape.concat(&[&pv, &qv, &sv]);
    backward_with(&mut tape, &y, &g);
    let (pd, qd, sd) = (f64s(&p), f64s(&q), f64s(&s));
    assert_close(
        "concat3 dP",
        &grad_of(&tape, &pv),
        &fd(
            |v| concat_ref(&[(v, 1), (&qd[..], 8), (&sd[..], 1)]),
            &p,
            &g,
        ),
        TOL,
    );
    assert_close(
        "concat3 dS",
        &grad_of(&tape, &sv),
        &fd(
            |v| concat_ref(&[(&pd[..], 1), (&qd[..], 8), (v, 1)]),
            &s,
            &g,
        ),
        TOL,
    );
    assert!(tape.grad(&qv).is_none(), "no gradient for a constant part");
}
