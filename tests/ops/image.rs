//! uint8 RGB pixels to the model's input (src/ops/image.rs, shaders/image.wgsl): float64
//! reference and forward (no gradient: images are constants).

use crate::*;
use asna::ops;

pub fn to_input_ref(px: &[u8]) -> Vec<f64> {
    px.iter().map(|&b| (b as f64 - 127.5) / 127.5).collect()
}

#[test]
fn image_normalisation() {
    let gpu = gpu();
    let px: Vec<u8> = (0..2 * 3 * 5 * 3).map(|i| (i * 37 % 256) as u8).collect();
    let t = ops::image::to_input(&gpu, &px, 2, 3, 5);
    assert_eq!(t.shape, vec![2, 3, 5, 3]);
    assert_close("u8 to unit", &download(&gpu, &t), &to_input_ref(&px), 1e-7);
}
