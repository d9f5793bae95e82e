//! The `asna` command line: parses the arguments and dispatches to the command's module, where
//! each command's options are declared.

use asna::gpu::{AdapterChoice, Gpu};
use clap::{Parser, Subcommand};
use std::rc::Rc;

#[derive(Parser)]
#[command(
    name = "asna",
    version,
    about = "ASNA perceptual image quality: score, train and evaluate on any GPU (wgpu: Vulkan, Metal, DX12, OpenGL ES, lavapipe)",
    after_help = "Adapter choice: high-performance GPUs first; --adapter, WGPU_ADAPTER_NAME and WGPU_BACKEND override it.\nSee `asna devices`."
)]
struct Cli {
    /// Use the adapter whose name contains this text (see `asna devices`)
    #[arg(long, global = true, value_name = "NAME")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter with its backend, type, driver, limits and features
    Devices(asna::devices::DevicesArgs),
    /// Predict the quality (MOS) of distorted images against their references
    Score(asna::score::ScoreArgs),
    /// Evaluate on a labelled dataset: PLCC, SRCC, KRCC, RMSE, with PSNR, SSIM, MS-SSIM and GMSD baselines
    Eval(asna::eval::EvalArgs),
    /// Train ASNA on a labelled dataset
    Train(asna::train::TrainArgs),
    /// Train the surrogate ranking network (the sorter) on synthetic vectors
    TrainSorter(asna::train_sorter::SorterArgs),
    /// Measure scoring and training throughput, GPU memory and (--profile) time per kernel
    Bench(asna::bench::BenchArgs),
    /// Time candidate convolution tiles for every shape of the model on this adapter and cache the fastest
    Tune(asna::tune::TuneArgs),
    /// Build a synthetic full-reference dataset labelled with TID2013's human MOS
    Synth(asna::synth::SynthArgs),
    /// Convert the authors' Keras 2 model (model_attention.hdf5) into an asna model file
    ImportKeras(asna::import::keras::ImportKerasArgs),
    /// Draw a training run's learning curve (validation PLCC and SRCC against steps, with the baselines' lines) and print it as a table
    PlotRun(asna::plot_run::PlotRunArgs),
    /// Write a web page that scores image pairs in the browser with WebGPU (--serve serves it)
    Web(asna::web::WebArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let gpu = || -> anyhow::Result<Rc<Gpu>> {
        Gpu::new(&AdapterChoice::from_arg(cli.adapter.as_deref()))
    };
    match &cli.command {
        Command::Devices(a) => asna::devices::run(a),
        Command::Score(a) => asna::score::run(gpu()?, a),
        Command::Eval(a) => asna::eval::run(gpu()?, a).map(|_| ()),
        Command::Train(a) => asna::train::run(&*gpu()?, a),
        Command::TrainSorter(a) => asna::train_sorter::run(&*gpu()?, a),
        Command::Bench(a) => asna::bench::run(&*gpu()?, a),
        Command::Tune(a) => asna::tune::run_command(&*gpu()?, a),
        Command::Synth(a) => asna::synth::run_command(a),
        Command::ImportKeras(a) => asna::import::keras::run_command(a),
        Command::PlotRun(a) => asna::plot_run::run(a),
        Command::Web(a) => asna::web::run(gpu()?, a),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {}", asna::one_line(&e));
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", e.backtrace());
        }
        std::process::exit(1);
    }
}
