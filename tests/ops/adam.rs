//! Adam (src/ops/adam.rs, shaders/adam.wgsl): a few steps in place on a parameter and its
//! moments against a float64 reference, with bias correction from step 1.

use crate::*;
use asna::ops::adam::{self, AdamConfig};

/// One Adam step t (1-based) on (param, m, v), in place.
pub fn adam_ref(
    cfg: &AdamConfig,
    lr: f64,
    t: u64,
    param: &mut [f64],
    m: &mut [f64],
    v: &mut [f64],
    grad: &[f64],
) {
    let (b1, b2, eps) = (cfg.beta1 as f64, cfg.beta2 as f64, cfg.eps as f64);
    let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
    for i in 0..param.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
        v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
        param[i] -= lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
    }
}

#[test]
fn adam_steps_match_the_reference() {
    let gpu = gpu();
    let mut r = Rand::new(30);
    let cfg = AdamConfig::default();
    let lr = 1e-3f32;
    let n = 301;
    let p0 = r.vec(n, -1.0, 1.0);
    let (param, m, v) = (
        up(&gpu, &[n], &p0),
        gpu.full(&[n], 0.0),
        gpu.full(&[n], 0.0),
    );
    let (mut pw, mut mw, mut vw) = (f64s(&p0), vec![0.0; n], vec![0.0; n]);
    for t in 1..=3 {
        // Gradients of mixed sign and size, some exactly 0.
        let mut g = r.vec(n, -2.0, 2.0);
        g[..7].fill(0.0);
        adam::step(&gpu, &cfg, lr, t, &param, &m, &v, &up(&gpu, &[n], &g));
        adam_ref(&cfg, lr as f64, t, &mut pw, &mut mw, &mut vw, &f64s(&g));
        assert_close(&format!("adam m, step {t}"), &download(&gpu, &m), &mw, 1e-6);
        assert_close(&format!("adam v, step {t}"), &download(&gpu, &v), &vw, 1e-6);
        assert_close(
            &format!("adam param, step {t}"),
            &download(&gpu, &param),
            &pw,
            1e-6,
        );
    }
}
