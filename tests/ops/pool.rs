//! 2x2 max pooling and 2x nearest-neighbour upsampling (src/ops/pool.rs, shaders/pool.wgsl):
//! float64 references, forward on odd sizes (the last odd row and column are dropped), and the
//! tape's `MaxPool` and `Upsample` rules.

use crate::*;
use asna::autograd::Tape;
use asna::ops;

// ------------------------------------------------------------------ float64 references

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

// ------------------------------------------------------------------ forward

#[test]
fn pooling_and_upsampling() {
    let gpu = gpu();
    let mut r = Rand::new(20);
    for xs in [[2, 6, 8, 3], [1, 7, 9, 1], [3, 2, 2, 5]] {
        let x = r.vec(xs.iter().product(), -2.0, 2.0);
        let xt = gpu.upload(&xs, &x);
        let y = ops::pool::maxpool(&gpu, &xt);
        assert_eq!(y.shape, vec![xs[0], xs[1] / 2, xs[2] / 2, xs[3]]);
        assert_close(
            "maxpool",
            &download(&gpu, &y),
            &maxpool_ref(&f64s(&x), xs),
            0.0,
        );
        let u = ops::pool::upsample(&gpu, &xt);
        assert_eq!(u.shape, vec![xs[0], xs[1] * 2, xs[2] * 2, xs[3]]);
        assert_close(
            "upsample",
            &download(&gpu, &u),
            &upsample_ref(&f64s(&x), xs),
            0.0,
        );
    }
}

// ------------------------------------------------------------------ backward (tape)

#[test]
fn pool_and_upsample_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(10);
    for xs in [[2usize, 7, 9, 3], [1, 4, 6, 1]] {
        let x = r.vec(xs.iter().product(), -1.0, 1.0);
        let mut tape = Tape::new(&gpu);
        let xv = tape.leaf(up(&gpu, &xs, &x), true);
        let y = tape.maxpool(&xv);
        let g = r.vec(y.t.numel(), -1.0, 1.0);
        backward_with(&mut tape, &y, &g);
        assert_close(
            &format!("maxpool dX {xs:?}"),
            &grad_of(&tape, &xv),
            &fd(|xx| maxpool_ref(xx, xs), &x, &g),
            TOL,
        );

        let mut tape = Tape::new(&gpu);
        let xv = tape.leaf(up(&gpu, &xs, &x), true);
        let y = tape.upsample(&xv);
        assert_eq!(y.shape(), &[xs[0], 2 * xs[1], 2 * xs[2], xs[3]]);
        let g = r.vec(y.t.numel(), -1.0, 1.0);
        backward_with(&mut tape, &y, &g);
        assert_close(
            &format!("upsample dX {xs:?}"),
            &grad_of(&tape, &xv),
            &fd(|xx| upsample_ref(xx, xs), &x, &g),
            TOL,
        );
    }
}
