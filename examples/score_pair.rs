//! Scores one pair of image files with the embedded default model.
//!
//!     cargo run --release --example score_pair -- data/demo/ref.png data/demo/dist.png

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [reference, distorted] = args.as_slice() else {
        anyhow::bail!("usage: score_pair REF DIST");
    };
    let model = asna::Model::new()?;
    let score = model.score_files(reference, distorted)?;
    println!("{score:.4}  ({})", model.adapter());
    Ok(())
}
