//! Builds the demo pair in data/demo/ from a Kodak photograph: the reference, and the same
//! image JPEG-compressed (quality 12) with mild additive Gaussian noise, using asna's own
//! distortion bank. `cargo run --release --example make_demo -- KODAK.png OUT_DIR`
use asna::rng::Rng;
use asna::synth::distortions::{additive_gaussian_noise, jpeg_compression};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, out) = (
        std::path::Path::new(&args[0]),
        std::path::Path::new(&args[1]),
    );
    let reference = asna::data::load_rgb(src)?;
    let mut rng = Rng::new(23);
    let noisy = additive_gaussian_noise(&reference, 4.0, &mut rng);
    let distorted = jpeg_compression(&noisy, 12.0, &mut rng);
    reference.save(out.join("ref.png"))?;
    distorted.save(out.join("dist.png"))?;
    println!(
        "PSNR {:.2} dB",
        asna::synth::psnr_u8(&reference, &distorted)
    );
    Ok(())
}
