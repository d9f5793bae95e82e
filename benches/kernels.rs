//! Kernel-level benchmarks behind `asna bench`: the convolution shapes of the ASNA model, each
//! timed forward, grad-input and grad-weight on the default adapter (GPU time from timestamp
//! queries where available, wall time otherwise). `cargo bench --bench kernels [-- FILTER]`.

use asna::gpu::Gpu;
use asna::ops::{self, Act};

struct Case {
    name: &'static str,
    x: [usize; 4],
    k: usize,
    cout: usize,
    stride: usize,
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let scale: usize = std::env::var("ASNA_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let n = scale;
    let cases = [
        Case {
            name: "enc.conv0 288 3->3 k5",
            x: [n, 288, 288, 3],
            k: 5,
            cout: 3,
            stride: 1,
        },
        Case {
            name: "enc.conv1 288 3->8 k5",
            x: [n, 288, 288, 3],
            k: 5,
            cout: 8,
            stride: 1,
        },
        Case {
            name: "enc.conv2 144 8->16 k5",
            x: [n, 144, 144, 8],
            k: 5,
            cout: 16,
            stride: 1,
        },
        Case {
            name: "enc.conv3 72 16->32 k3",
            x: [n, 72, 72, 16],
            k: 3,
            cout: 32,
            stride: 1,
        },
        Case {
            name: "enc.conv4 36 32->64 k3",
            x: [n, 36, 36, 32],
            k: 3,
            cout: 64,
            stride: 1,
        },
        Case {
            name: "dec.conv1 36 128->64 k3",
            x: [n, 36, 36, 128],
            k: 3,
            cout: 64,
            stride: 1,
        },
        Case {
            name: "dec.conv0 18 64->64 k3",
            x: [n, 18, 18, 64],
            k: 3,
            cout: 64,
            stride: 1,
        },
        Case {
            name: "dec.conv2 72 96->32 k3",
            x: [n, 72, 72, 96],
            k: 3,
            cout: 32,
            stride: 1,
        },
        Case {
            name: "dec.conv3 144 48->16 k3",
            x: [n, 144, 144, 48],
            k: 3,
            cout: 16,
            stride: 1,
        },
        Case {
            name: "dec.down0 288 24->32 k3 s4",
            x: [n, 288, 288, 24],
            k: 3,
            cout: 32,
            stride: 4,
        },
    ];
    let gpu = Gpu::default_adapter().expect("adapter");
    let profiling = gpu.profiler.borrow().available();
    println!(
        "adapter: {}  ({} images per case; GPU time: {})",
        gpu.describe(),
        n,
        if profiling {
            "timestamps"
        } else {
            "wall clock"
        }
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "case", "fwd GFLOP/s", "dX GFLOP/s", "dW GFLOP/s"
    );
    for c in cases
        .iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f)))
    {
        let ws = [c.k, c.k, c.x[3], c.cout];
        let x = gpu.full(&c.x, 0.5);
        let w = gpu.full(&ws, 0.01);
        let b = gpu.full(&[c.cout], 0.0);
        let g = ops::conv::ConvGeom::new(&c.x, &ws, c.stride);
        let dy = gpu.full(&g.out_shape(), 0.1);
        let mut rates = Vec::new();
        for which in 0..3 {
            let run = || match which {
                0 => ops::conv::forward(&gpu, &x, &w, Some(&b), c.stride, Act::LeakyRelu),
                1 => ops::conv::backward_input(&gpu, &dy, &w, &g),
                _ => ops::conv::backward_weight(&gpu, &x, &dy, &g),
            };
            rates.push(g.flops() / seconds(&gpu, run) / 1e9);
        }
        println!(
            "{:<28} {:>12.2} {:>12.2} {:>12.2}",
            c.name, rates[0], rates[1], rates[2]
        );
    }
    reductions(&gpu, n, filter.as_deref());
}

/// Column reductions shaped like the model's batch-norm statistics (sum of squared deviations
/// over every position of a channels-last activation), in GB/s read.
fn reductions(gpu: &Gpu, n: usize, filter: Option<&str>) {
    use asna::ops::reduce::{columns, Summand};
    let cases = [
        ("bn stats 288x288x8", 288 * 288, 8),
        ("bn stats 144x144x16", 144 * 144, 16),
        ("bn stats 36x36x64", 36 * 36, 64),
        ("bias grad 288x288x3", 288 * 288, 3),
    ];
    println!("{:<28} {:>12}", "reduction", "GB/s");
    for (name, positions, c) in cases
        .iter()
        .filter(|c| filter.is_none_or(|f| c.0.contains(f)))
    {
        let rows = 2 * n * positions;
        let x = gpu.full(&[1, rows, *c], 0.5);
        let m = gpu.full(&[*c], 0.25);
        let run = || columns(gpu, &x, Summand::SquaredDeviation, None, Some(&m), 1.0);
        let secs = seconds(gpu, run);
        println!("{:<28} {:>12.2}", name, x.bytes() as f64 / secs / 1e9);
    }
}

/// Seconds of one run of `run` after a warm-up run that compiles its pipelines: GPU time from
/// timestamp queries where the adapter has them, wall time otherwise.
fn seconds(gpu: &Gpu, run: impl Fn() -> asna::gpu::Tensor) -> f64 {
    gpu.download(&run()).unwrap();
    gpu.time_run(|| gpu.download(&run()).map(|_| ())).unwrap()
}
