//! `asna web`: writes a static site that scores image pairs in the browser with WebGPU, from
//! plans of this engine's own scoring pass (src/plan/) replayed by web/asna.js; `--serve`
//! serves it over HTTP (`serve.rs`).
//!
//! The site: `index.html` and `page.js` (the page), `asna.js` (the JavaScript API),
//! `bench.html` (times the model in the browser),
//! `model.json` (which plan runs on which kind of adapter), `plan-gpu.json` and
//! `plan-cpu.json` with their shared `weights.bin`, `shaders/*.wgsl`, and `demo/` (the demo
//! pair).

pub mod serve;

use crate::files::write_atomic;
use crate::gpu::Gpu;
use crate::model::checkpoint::load_model;
use crate::plan::record::{finish, record_scoring, Kernels, WeightsFile};
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The site's static files, embedded: (path in the site, contents).
pub const STATIC_FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../web/index.html")),
    ("page.js", include_bytes!("../../web/page.js")),
    ("asna.js", include_bytes!("../../web/asna.js")),
    ("bench.html", include_bytes!("../../web/bench.html")),
    ("demo/ref.png", include_bytes!("../../data/demo/ref.png")),
    ("demo/dist.png", include_bytes!("../../data/demo/dist.png")),
];

pub const MANIFEST: &str = "model.json";
pub const WEIGHTS: &str = "weights.bin";

/// Pairs per pass of the site's plans: one window at a time keeps the GPU memory of a phone.
pub const BATCH: usize = 1;

// `asna web`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct WebArgs {
    /// Directory to write the site into (created if missing; the site's own files in it are replaced)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Model file (.safetensors or a training run directory). Default: the embedded model
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Then serve DIR over HTTP at this address until stopped (default 127.0.0.1:8000; port 0 picks a free one)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8000")]
    pub serve: Option<String>,
}

/// Builds the site, then (with `--serve`) gives the GPU back and serves it: the server needs no
/// device, and a driver's threads must not share its file descriptors.
pub fn run(gpu: Rc<Gpu>, args: &WebArgs) -> Result<()> {
    // The address first: a port in use is refused before the site is built.
    let listener = args.serve.as_deref().map(serve::bind).transpose()?;
    let files = write_site(&gpu, &args.out, args.weights.as_deref())?;
    drop(gpu);
    let shown = args.out.display();
    eprintln!("wrote {files} files to {shown}");
    match listener {
        Some(listener) => serve::serve(
            listener,
            &args.out,
            &serve::ServeOptions::default(),
            |bound| {
                use std::io::Write;
                println!("serving {shown} at http://{bound}/ (Ctrl-C stops)");
                let _ = std::io::stdout().flush();
            },
        ),
        None => {
            eprintln!(
                "open it from any static file server, e.g. `asna web --out {shown} --serve` and http://127.0.0.1:8000/"
            );
            Ok(())
        }
    }
}

/// Writes the site into `dir` (each file atomically) and returns how many files it wrote.
pub fn write_site(gpu: &Gpu, dir: &Path, weights: Option<&Path>) -> Result<usize> {
    if dir.exists() && !dir.is_dir() {
        bail!("{}: exists and is not a directory", dir.display());
    }
    let model = load_model(gpu, weights)?;
    let mut blob = WeightsFile::default();
    let mut plans = Vec::new();
    for kernels in [Kernels::Gpu, Kernels::Cpu] {
        plans.push(record_scoring(
            gpu, &model, BATCH, kernels, &mut blob, WEIGHTS,
        )?);
    }
    finish(&mut plans, &blob);
    let mut used: Vec<&str> = plans
        .iter()
        .flat_map(|p| p.shaders.iter().map(String::as_str))
        .collect();
    used.sort();
    used.dedup();

    // No file of the site may be the model it is made from (through a link, say).
    let site_files: Vec<PathBuf> = STATIC_FILES
        .iter()
        .map(|(name, _)| name.to_string())
        .chain(used.iter().map(|name| format!("shaders/{name}")))
        .chain([WEIGHTS.to_string(), MANIFEST.to_string()])
        .chain(plans.iter().map(|p| format!("plan-{}.json", p.kernels)))
        .map(|name| dir.join(name))
        .collect();
    let outputs: Vec<(&str, &Path)> = site_files.iter().map(|p| ("--out", p.as_path())).collect();
    // The file the model came from (a run directory's best.safetensors, for one).
    let model_file = weights.map(|_| PathBuf::from(&model.source));
    crate::files::refuse_overwriting_inputs(&outputs, model_file.as_deref())?;

    let create = |d: &Path| {
        std::fs::create_dir_all(d).map_err(|e| anyhow!("{}: cannot create ({e})", d.display()))
    };
    create(&dir.join("shaders"))?;
    create(&dir.join("demo"))?;
    let mut written = 0;
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        write_atomic(&dir.join(name), bytes)?;
        written += 1;
        Ok(())
    };
    for (name, bytes) in STATIC_FILES {
        put(name, bytes)?;
    }
    let shaders = crate::ops::all_shaders();
    for name in used {
        let text = shaders
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| anyhow!("no embedded shader {name}"))?;
        put(&format!("shaders/{name}"), text.as_bytes())?;
    }
    put(WEIGHTS, &blob.bytes)?;
    let mut names = serde_json::Map::new();
    for plan in &plans {
        let name = format!("plan-{}.json", plan.kernels);
        put(&name, plan.to_json().as_bytes())?;
        names.insert(plan.kernels.clone(), name.into());
    }
    let manifest = serde_json::json!({
        "format": "asna-site",
        "version": 1,
        "model": model.source,
        "asna_version": env!("CARGO_PKG_VERSION"),
        "plans": names,
    });
    put(MANIFEST, manifest.to_string().as_bytes())?;
    Ok(written)
}
