//! Scores every image of a folder of distorted images against the reference of the same name
//! in another folder, with an ensemble of model files if given, and prints one line per pair.
//!
//!     cargo run --release --example score_folder -- REF_DIR DIST_DIR [MODEL.safetensors ...]

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [ref_dir, dist_dir, weights @ ..] = args.as_slice() else {
        anyhow::bail!("usage: score_folder REF_DIR DIST_DIR [MODEL.safetensors ...]");
    };
    let mut builder = asna::Model::builder();
    for w in weights {
        builder = builder.weights(w);
    }
    let model = builder.build()?;
    let pairs = asna::score::pairs_from_dirs(ref_dir, dist_dir)?;
    let scores = model.score_file_pairs(&pairs, |done, total| eprint!("\r{done}/{total}"))?;
    eprintln!();
    for ((_, dist), score) in pairs.iter().zip(scores) {
        println!("{}\t{score:.4}", dist.display());
    }
    Ok(())
}
