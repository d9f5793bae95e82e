//! The tape itself (src/autograd/mod.rs): gradients of values used more than once are
//! accumulated, constants get none, reshapes pass gradients through, and a tape that does not
//! record keeps nothing. Each op's rule is tested in its family's file.

use crate::*;
use asna::autograd::Tape;

#[test]
fn tape_accumulates_gradients_of_values_used_twice() {
    // y = sum((w * x)^2) + sum(w^2): w is used by two ops, x by one; d/dw = 2 w x^2 + 2 w.
    let gpu = gpu();
    let mut r = Rand::new(15);
    let (x, w) = (r.vec(12, -1.0, 1.0), r.vec(12, -1.0, 1.0));
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &[1, 2, 2, 3], &x), false);
    let wv = tape.leaf(up(&gpu, &[1, 2, 2, 3], &w), true);
    let p = tape.mul(&wv, &xv);
    let a = tape.sum_squares(&p, 1.0);
    let b = tape.sum_squares(&wv, 1.0);
    let root = tape.add(&a, &b);
    tape.backward(&root);
    let want: Vec<f64> = w
        .iter()
        .zip(&x)
        .map(|(w, x)| 2.0 * *w as f64 * (*x as f64).powi(2) + 2.0 * *w as f64)
        .collect();
    assert_close("accumulated dW", &grad_of(&tape, &wv), &want, 1e-6);
    assert!(tape.grad(&xv).is_none(), "no gradient for a constant");
}

/// `Reshape` is a view: the same values, and dY reshaped back to the input's shape.
#[test]
fn reshape_passes_values_and_gradients_through() {
    let gpu = gpu();
    let mut r = Rand::new(17);
    let xs = [2usize, 3, 5, 4];
    let x = r.vec(120, -1.0, 1.0);
    let g = r.vec(120, -1.0, 1.0);
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &xs, &x), true);
    let y = tape.reshape(&xv, &[2, 1, 1, 60]);
    assert_eq!(y.shape(), &[2, 1, 1, 60]);
    assert_close("reshape", &download(&gpu, &y.t), &f64s(&x), 0.0);
    backward_with(&mut tape, &y, &g);
    assert_eq!(tape.grad(&xv).unwrap().shape, xs.to_vec());
    assert_close(
        "reshape dX",
        &grad_of(&tape, &xv),
        &fd(|v| v.to_vec(), &x, &g),
        TOL,
    );
}

/// Seeding dY directly equals differentiating the dot product sum(y * g) as a scalar root.
#[test]
fn backward_from_equals_the_gradient_of_a_dot_product() {
    let gpu = gpu();
    let mut r = Rand::new(18);
    let xs = [1usize, 3, 4, 2];
    let (x, g) = (r.vec(24, -1.0, 1.0), r.vec(24, -1.0, 1.0));
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &xs, &x), true);
    let y = tape.activation(&xv, asna::ops::Act::Tanh);
    backward_with(&mut tape, &y, &g);
    let seeded = grad_of(&tape, &xv);

    // sum(y * g) as a dense layer with weight g: the head's flatten-then-dense.
    let mut tape = Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &xs, &x), true);
    let y = tape.activation(&xv, asna::ops::Act::Tanh);
    let flat = tape.reshape(&y, &[1, 1, 1, 24]);
    let gv = tape.leaf(up(&gpu, &[1, 1, 24, 1], &g), false);
    let root = tape.conv(&flat, &gv, None, 1, asna::ops::Act::None);
    tape.backward(&root);
    assert_close("seeded dX", &seeded, &f64s(&grad_of(&tape, &xv)), 1e-6);
}

/// Forward only: nothing is recorded, nothing requires gradients, and the values are those of
/// the recording tape.
#[test]
fn inference_tape_records_nothing() {
    let gpu = gpu();
    let mut r = Rand::new(19);
    let x = r.vec(24, -1.0, 1.0);
    let mut rec = Tape::new(&gpu);
    let mut inf = Tape::inference(&gpu);
    assert!(rec.is_recording() && !inf.is_recording());
    let xr = rec.leaf(up(&gpu, &[1, 2, 3, 4], &x), true);
    let xi = inf.leaf(up(&gpu, &[1, 2, 3, 4], &x), true);
    assert!(
        !xi.requires_grad,
        "an inference tape's leaves never require gradients"
    );
    let ar = rec.activation(&xr, asna::ops::Act::Relu);
    let yr = rec.sum_squares(&ar, 0.5);
    let ai = inf.activation(&xi, asna::ops::Act::Relu);
    let yi = inf.sum_squares(&ai, 0.5);
    assert!(yr.requires_grad && !yi.requires_grad);
    assert_close(
        "inference value",
        &download(&gpu, &yi.t),
        &f64s(&download(&gpu, &yr.t)),
        0.0,
    );
    inf.backward(&yi);
    assert!(inf.grad(&xi).is_none());
}
