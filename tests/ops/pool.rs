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
    // The last two also run the vec4 kernel (channels a multiple of 4), one with odd sides.
    for xs in [
        [2, 6, 8, 3],
        [1, 7, 9, 1],
        [3, 2, 2, 5],
        [2, 5, 7, 8],
        [1, 4, 6, 4],
    ] {
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

/// dY routed to the first maximum of each window in row-major order, 0 elsewhere (also in
/// the rows and columns that pooling dropped).
fn maxpool_backward_ref(x: &[f32], [n, h, w, c]: [usize; 4], dy: &[f32]) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0.0; x.len()];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let at = |yy: usize, xx: usize| ((img * h + yy) * w + xx) * c + ch;
                    let window = [
                        at(2 * oy, 2 * ox),
                        at(2 * oy, 2 * ox + 1),
                        at(2 * oy + 1, 2 * ox),
                        at(2 * oy + 1, 2 * ox + 1),
                    ];
                    let mut first = window[0];
                    for &j in &window[1..] {
                        if x[j] > x[first] {
                            first = j;
                        }
                    }
                    dx[first] = dy[((img * oh + oy) * ow + ox) * c + ch] as f64;
                }
            }
        }
    }
    dx
}

#[test]
fn maxpool_gradient_goes_to_the_first_maximum_and_nowhere_else() {
    let gpu = gpu();
    let mut r = Rand::new(30);
    // Odd sides (a dropped row and column), a side of 1 (no window at all), 1 channel.
    for xs in [
        [2usize, 5, 7, 3],
        [1, 3, 3, 1],
        [1, 1, 4, 2],
        [2, 4, 1, 3],
        [1, 6, 4, 4],
    ] {
        // Values from a small set, so that most windows hold ties.
        let x: Vec<f32> = r
            .vec(xs.iter().product(), 0.0, 3.0)
            .iter()
            .map(|v| v.floor())
            .collect();
        let (oh, ow) = (xs[1] / 2, xs[2] / 2);
        let dy = r.vec(xs[0] * oh * ow * xs[3], -1.0, 1.0);
        let dyt = gpu.upload(&[xs[0], oh, ow, xs[3]], &dy);
        let xt = gpu.upload(&xs, &x);
        // dX gets a buffer that held other values, so that an element left unwritten shows.
        drop(gpu.upload(&xs, &vec![7.0; xs.iter().product()]));
        let dx = ops::pool::maxpool_backward(&gpu, &xt, &dyt);
        assert_close(
            &format!("maxpool dX with ties {xs:?}"),
            &download(&gpu, &dx),
            &maxpool_backward_ref(&x, xs, &dy),
            0.0,
        );
    }
}
