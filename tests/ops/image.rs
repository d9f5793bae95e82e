//! uint8 RGB pixels to the model's input (src/ops/image.rs, shaders/image.wgsl): float64
//! reference and forward (no gradient: images are constants).

use crate::*;
use asna::ops;

pub fn to_input_ref(px: &[u8]) -> Vec<f64> {
    px.iter().map(|&b| (b as f64 - 127.5) / 127.5).collect()
}

/// Every byte of the four in a packed word, and batches whose byte count leaves 1, 2 or 3
/// bytes in the last word (and none), including 0 and 255.
#[test]
fn image_normalisation() {
    let gpu = gpu();
    for (n, h, w) in [(2, 3, 5), (1, 1, 1), (1, 3, 1), (1, 1, 3), (2, 2, 2)] {
        let px: Vec<u8> = (0..n * h * w * 3)
            .map(|i| match i {
                0 => 0,
                1 => 255,
                _ => (i * 37 % 256) as u8,
            })
            .collect();
        let t = ops::image::to_input(&gpu, &px, n, h, w);
        assert_eq!(t.shape, vec![n, h, w, 3]);
        let name = format!("u8 to unit {n}x{h}x{w}x3");
        assert_close(&name, &download(&gpu, &t), &to_input_ref(&px), 1e-7);
    }
}
