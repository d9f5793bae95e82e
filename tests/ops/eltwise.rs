//! Element-wise ops (src/ops/eltwise.rs, shaders/eltwise.wgsl): activations, PReLU, products
//! (same shape and the attention's [N, 1, 1, C] gate), a x + b y, the Siamese absolute
//! difference of a stacked [R; D] batch and batch slices: float64 references, forward, and the
//! tape's `Activation`, `Prelu`, `Mul`, `Axpby`, `AbsDiffHalves` and `SliceBatch` rules. The
//! activation reference `act_ref` sits in tests/common/mod.rs with the convolution's.

use crate::*;
use asna::autograd::Tape;
use asna::ops::{self, Act};

// ------------------------------------------------------------------ float64 references

/// PReLU with one alpha per channel (the last axis).
pub fn prelu_ref(x: &[f64], alpha: &[f64]) -> Vec<f64> {
    let c = alpha.len();
    x.iter()
        .enumerate()
        .map(|(i, &t)| if t >= 0.0 { t } else { alpha[i % c] * t })
        .collect()
}

/// a * b, with b of a's size or [N, 1, 1, C] broadcast over each image of a ([N, H, W, C]).
pub fn mul_ref(a: &[f64], b: &[f64], [n, h, w, c]: [usize; 4]) -> Vec<f64> {
    if b.len() == a.len() {
        return a.iter().zip(b).map(|(p, q)| p * q).collect();
    }
    assert_eq!(
        b.len(),
        n * c,
        "mul_ref: b is neither a's size nor [N, 1, 1, C]"
    );
    a.iter()
        .enumerate()
        .map(|(i, &t)| t * b[(i / (h * w * c)) * c + i % c])
        .collect()
}

pub fn axpby_ref(alpha: f64, a: &[f64], beta: f64, b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(p, q)| alpha * p + beta * q).collect()
}

/// |x[:N] - x[N:]| of a stacked [R; D] batch, element by element.
pub fn absdiff_halves_ref(x: &[f64]) -> Vec<f64> {
    let half = x.len() / 2;
    (0..half).map(|i| (x[i] - x[i + half]).abs()).collect()
}

/// Images start..start + count of a batch of `n` images.
pub fn slice_batch_ref(x: &[f64], n: usize, start: usize, count: usize) -> Vec<f64> {
    let per = x.len() / n;
    x[start * per..(start + count) * per].to_vec()
}

// ------------------------------------------------------------------ forward

#[test]
fn activations_prelu_mul_add() {
    let gpu = gpu();
    let mut r = Rand::new(22);
    let xs = [3usize, 5, 7, 3];
    let x = r.vec(3 * 5 * 7 * 3, -3.0, 3.0);
    let xt = gpu.upload(&xs, &x);
    let xd = f64s(&x);
    for act in [Act::LeakyRelu, Act::Relu, Act::Sigmoid, Act::Tanh] {
        let y = ops::eltwise::activation(&gpu, &xt, act);
        let want: Vec<f64> = x.iter().map(|&v| act_ref(v as f64, act)).collect();
        assert_close(&format!("{act:?}"), &download(&gpu, &y), &want, 1e-6);
    }
    let alpha = r.vec(3, 0.0, 0.3);
    let y = ops::eltwise::prelu(&gpu, &xt, &gpu.upload(&[3], &alpha));
    assert_close(
        "prelu",
        &download(&gpu, &y),
        &prelu_ref(&xd, &f64s(&alpha)),
        1e-7,
    );
    // Broadcast product with a [N, 1, 1, C] gate, and same-shape product.
    let g = r.vec(9, 0.0, 1.0);
    let y = ops::eltwise::mul(&gpu, &xt, &gpu.upload(&[3, 1, 1, 3], &g));
    assert_close(
        "mul broadcast",
        &download(&gpu, &y),
        &mul_ref(&xd, &f64s(&g), xs),
        1e-7,
    );
    let z = r.vec(x.len(), -1.0, 1.0);
    let zt = gpu.upload(&xt.shape, &z);
    let y = ops::eltwise::mul(&gpu, &xt, &zt);
    assert_close(
        "mul",
        &download(&gpu, &y),
        &mul_ref(&xd, &f64s(&z), xs),
        1e-7,
    );
    let y = ops::eltwise::add(&gpu, &xt, &zt);
    assert_close(
        "add",
        &download(&gpu, &y),
        &axpby_ref(1.0, &xd, 1.0, &f64s(&z)),
        1e-7,
    );
}

#[test]
fn absdiff_halves_and_slice() {
    let gpu = gpu();
    let mut r = Rand::new(21);
    // Stacked [R; D] batch of 2 pairs.
    let y = r.vec(4 * 3 * 3 * 2, -1.0, 1.0);
    let yt = gpu.upload(&[4, 3, 3, 2], &y);
    let d = ops::eltwise::absdiff_halves(&gpu, &yt);
    assert_eq!(d.shape, vec![2, 3, 3, 2]);
    assert_close(
        "absdiff",
        &download(&gpu, &d),
        &absdiff_halves_ref(&f64s(&y)),
        1e-7,
    );
    let s = ops::eltwise::slice_batch(&gpu, &yt, 2, 2);
    assert_close(
        "slice",
        &download(&gpu, &s),
        &slice_batch_ref(&f64s(&y), 4, 2, 2),
        0.0,
    );
}

// ------------------------------------------------------------------ backward (tape)

#[test]
fn activation_prelu_mul_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(12);
    let xs = [2usize, 3, 5, 4];
    let n: usize = xs.iter().product();
    let x = r.vec(n, -2.0, 2.0);
    let g = r.vec(n, -1.0, 1.0);
    let xd = f64s(&x);
    // 120 elements run four an invocation, 45 one an invocation.
    let odd = [1usize, 3, 5, 3];
    let (x_odd, g_odd) = (r.vec(45, -2.0, 2.0), r.vec(45, -1.0, 1.0));
    for (shape, x, g) in [(xs, &x, &g), (odd, &x_odd, &g_odd)] {
        for act in [Act::LeakyRelu, Act::Relu, Act::Sigmoid, Act::Tanh] {
            let mut tape = Tape::new(&gpu);
            let xv = tape.leaf(up(&gpu, &shape, x), true);
            let y = tape.activation(&xv, act);
            backward_with(&mut tape, &y, g);
            let f = |v: &[f64]| v.iter().map(|&t| act_ref(t, act)).collect::<Vec<f64>>();
            assert_close(
                &format!("{act:?} dX, {shape:?}"),
                &grad_of(&tape, &xv),
                &fd(f, x, g),
                TOL,
            );
        }
    }

    let alpha = r.vec(4, 0.05, 0.3);
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &xs, &x), true);
    let av = tape.leaf(up(&gpu, &[4], &alpha), true);
    let y = tape.prelu(&xv, &av);
    backward_with(&mut tape, &y, &g);
    let ad = f64s(&alpha);
    assert_close(
        "prelu dX",
        &grad_of(&tape, &xv),
        &fd(|v| prelu_ref(v, &ad), &x, &g),
        TOL,
    );
    assert_close(
        "prelu dAlpha",
        &grad_of(&tape, &av),
        &fd(|a| prelu_ref(&xd, a), &alpha, &g),
        TOL,
    );

    // Broadcast product x * gate[N, 1, 1, C] (the channel attention) and same-shape product.
    let gate = r.vec(2 * 4, 0.0, 1.0);
    let z = r.vec(n, -1.0, 1.0);
    for (name, other, shape) in [("gate", &gate, [2usize, 1, 1, 4]), ("same shape", &z, xs)] {
        let mut tape = Tape::new(&gpu);
        let xv = tape.leaf(up(&gpu, &xs, &x), true);
        let ov = tape.leaf(up(&gpu, &shape, other), true);
        let y = tape.mul(&xv, &ov);
        backward_with(&mut tape, &y, &g);
        let od = f64s(other);
        assert_close(
            &format!("mul {name} dA"),
            &grad_of(&tape, &xv),
            &fd(|v| mul_ref(v, &od, xs), &x, &g),
            TOL,
        );
        assert_close(
            &format!("mul {name} dB"),
            &grad_of(&tape, &ov),
            &fd(|v| mul_ref(&xd, v, xs), other, &g),
            TOL,
        );
    }
}

/// `Axpby` scales dY by each coefficient (and passes it through unscaled for `add`).
#[test]
fn axpby_and_add_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(16);
    let xs = [2usize, 3, 5, 4];
    let n: usize = xs.iter().product();
    let (a, b, g) = (
        r.vec(n, -1.0, 1.0),
        r.vec(n, -1.0, 1.0),
        r.vec(n, -1.0, 1.0),
    );
    let (ad, bd) = (f64s(&a), f64s(&b));
    let mut tape = Tape::new(&gpu);
    let av = tape.leaf(up(&gpu, &xs, &a), true);
    let bv = tape.leaf(up(&gpu, &xs, &b), true);
    let y = tape.axpby(0.7, &av, -1.3, &bv);
    assert_close(
        "axpby",
        &download(&gpu, &y.t),
        &axpby_ref(0.7, &ad, -1.3, &bd),
        1e-6,
    );
    backward_with(&mut tape, &y, &g);
    assert_close(
        "axpby dA",
        &grad_of(&tape, &av),
        &fd(|v| axpby_ref(0.7, v, -1.3, &bd), &a, &g),
        TOL,
    );
    assert_close(
        "axpby dB",
        &grad_of(&tape, &bv),
        &fd(|v| axpby_ref(0.7, &ad, -1.3, v), &b, &g),
        TOL,
    );

    let mut tape = Tape::new(&gpu);
    let av = tape.leaf(up(&gpu, &xs, &a), true);
    let bv = tape.leaf(up(&gpu, &xs, &b), false);
    let y = tape.add(&av, &bv);
    backward_with(&mut tape, &y, &g);
    assert_close(
        "add dA",
        &grad_of(&tape, &av),
        &fd(|v| axpby_ref(1.0, v, 1.0, &bd), &a, &g),
        TOL,
    );
    assert!(tape.grad(&bv).is_none(), "no gradient for a constant");
}

#[test]
fn absdiff_and_slice_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(10);
    // Stacked [R; D] of 2 pairs, with some exact ties that must get gradient 0.
    let mut y = r.vec(4 * 3 * 3 * 2, -1.0, 1.0);
    for i in 0..5 {
        y[i + 36] = y[i];
    }
    let g = r.vec(36, -1.0, 1.0);
    let mut tape = Tape::new(&gpu);
    let yv = tape.leaf(up(&gpu, &[4, 3, 3, 2], &y), true);
    let d = tape.absdiff_halves(&yv);
    backward_with(&mut tape, &d, &g);
    let got = grad_of(&tape, &yv);
    for i in 0..5 {
        assert_eq!(
            (got[i], got[i + 36]),
            (0.0, 0.0),
            "equal inputs get no gradient"
        );
    }
    let mut want = fd(absdiff_halves_ref, &y, &g);
    for i in 0..5 {
        want[i] = 0.0;
        want[i + 36] = 0.0;
    }
    assert_close("absdiff dX", &got, &want, TOL);

    let g = r.vec(18, -1.0, 1.0);
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &[4, 3, 3, 1], &y[..36]), true);
    let s = tape.slice_batch(&xv, 1, 2);
    assert_eq!(s.shape(), &[2, 3, 3, 1]);
    backward_with(&mut tape, &s, &g);
    assert_close(
        "slice dX",
        &grad_of(&tape, &xv),
        &fd(|v| slice_batch_ref(v, 4, 1, 2), &y[..36], &g),
        TOL,
    );
}
