use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "asna", version, about = "ASNA perceptual image quality: score, train and evaluate on any GPU (wgpu)")]
struct Cli {
    /// Use the adapter whose name contains this text (see `asna devices`); WGPU_ADAPTER_NAME
    /// and WGPU_BACKEND also work
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter with its backend, type, driver, limits and features
    Devices {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices { json } => asna::devices::run(json),
    };
    if let Err(e) = result {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}
