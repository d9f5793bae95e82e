//! Scores decoded images in one batch: a reference against copies of itself made worse step
//! by step (more and more noise). The scores fall as the noise grows.
//!
//!     cargo run --release --example score_batch -- data/demo/ref.png

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/demo/ref.png".into());
    let reference = asna::data::load_rgb(path.as_ref())?;
    let noisy = |amplitude: i32| {
        let mut img = reference.clone();
        for (i, v) in img.iter_mut().enumerate() {
            // A fixed pattern of pseudo-random offsets in [-amplitude, amplitude].
            let h = (i as u32).wrapping_mul(2_654_435_761) >> 16;
            let offset = (h % (2 * amplitude as u32 + 1)) as i32 - amplitude;
            *v = (*v as i32 + offset).clamp(0, 255) as u8;
        }
        img
    };
    let levels = [0, 8, 16, 32, 64];
    let pairs: Vec<_> = levels
        .iter()
        .map(|&a| (reference.clone(), noisy(a)))
        .collect();
    let model = asna::Model::builder().batch(32).build()?;
    for (level, score) in levels.iter().zip(model.score_batch(&pairs)?) {
        println!("noise +-{level:>2}: {score:.4}");
    }
    Ok(())
}
