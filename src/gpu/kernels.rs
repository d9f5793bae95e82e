//! Kernel policy: which convolution kernel family and tile configuration runs for each shape
//! on this device. Everything that decides it lives here and is read once, when the device
//! opens: the family native to the adapter type, the `ASNA_CONV` override, and the winners
//! `asna tune` stored in the tuning cache (`tuning.rs` reads and writes that file). The ops
//! only ask `KernelPolicy::choose` with a shape key; `ops/conv.rs` builds the keys and
//! launches whatever configuration comes back.
//!
//! A new kernel family plugs in here: a `Family` variant, its rule in `default_for`, its
//! limits in `valid` and its search space in `candidates`.

use super::tuning::{self, Seen, TunedKernel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A convolution kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Workgroup-memory tiles with register blocking: the GPU path.
    Tiled,
    /// Direct loads without workgroup memory or barriers, each thread its own output
    /// channels: a CPU-driver kernel, kept for products too short for `Uniform` (dense layers).
    Direct,
    /// The CPU-driver path (shaders/conv_uniform.wgsl): every invocation of a workgroup
    /// shares the same output channels, so that the shared operand (weights from a uniform
    /// window; dY for the weight gradient) is one load and a broadcast, read as vec4 and
    /// reused over several pixels per invocation. f32 only.
    Uniform,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Tiled, Family::Direct, Family::Uniform];

    pub fn name(self) -> &'static str {
        match self {
            Family::Tiled => "tiled",
            Family::Direct => "direct",
            Family::Uniform => "uniform",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The family that runs best on this kind of adapter.
    pub fn native(device_type: wgpu::DeviceType) -> Family {
        if device_type == wgpu::DeviceType::Cpu {
            Family::Uniform
        } else {
            Family::Tiled
        }
    }
}

/// Workgroup sizes the tiled kernel may use: 64 fits every adapter's defaults, 128 and 256
/// give a GPU the 64x64 and 128x32 tiles that keep its arithmetic units fed.
pub const WORKGROUP_SIZES: [usize; 3] = [64, 128, 256];

/// One configuration of the convolution kernels: the family, the register tile per thread
/// (TM rows x TN columns of C), the threads along N (wg / threads_n along M) and the threads
/// per workgroup. Serialised into the tuning cache as it is. For `Uniform` TM is the pixels
/// per invocation and TN the workgroup's output channels (a multiple of 4, read as vec4),
/// shared by all of its 64 invocations (threads_n = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileConfig {
    #[serde(rename = "kernel")]
    pub family: Family,
    pub tm: usize,
    pub tn: usize,
    pub threads_n: usize,
    #[serde(default = "default_workgroup")]
    pub wg: usize,
}

/// Cache entries written before the workgroup size was tunable ran 64 threads.
fn default_workgroup() -> usize {
    64
}

impl TileConfig {
    pub const fn new(family: Family, tm: usize, tn: usize, threads_n: usize) -> TileConfig {
        TileConfig {
            family,
            tm,
            tn,
            threads_n,
            wg: 64,
        }
    }

    pub const fn with_wg(self, wg: usize) -> TileConfig {
        TileConfig { wg, ..self }
    }

    /// The built-in choice by the width `gn` of the product, so that narrow layers (3 or 8
    /// output channels) do not waste a 64-wide tile.
    pub fn default_for(family: Family, gn: usize) -> TileConfig {
        let t = |tm, tn, threads_n| TileConfig::new(family, tm, tn, threads_n);
        match family {
            Family::Uniform => {
                // Up to 32 channels as vec4, and as many pixels as keep 16 vec4 accumulators
                // (at most 4: more pixels per weight load stopped paying in the probes).
                let tn = gn.next_power_of_two().clamp(4, 32);
                t((64 / tn).clamp(1, 4), tn, 1)
            }
            Family::Direct => {
                // Neighbouring threads take neighbouring output channels (contiguous weight
                // loads); each thread holds the full 32 accumulators, up to 8 columns wide.
                // This is the rule `asna tune` found on lavapipe for most of the model's
                // shapes (narrow layers with one or two threads along N were 2-4x faster
                // than spreading them over 8).
                let width = gn.next_power_of_two().clamp(1, 64);
                let tn = width.min(8);
                t(32 / tn.max(4), tn, (width / 8).max(1))
            }
            Family::Tiled => match gn {
                0..=4 => t(2, 4, 1),
                5..=8 => t(4, 4, 2),
                9..=16 => t(4, 4, 4),
                17..=32 => t(8, 4, 8),
                _ => t(4, 8, 8),
            },
        }
    }

    /// The default for a product `gm` x `gn`: the family's rule, except that a `Uniform`
    /// product with fewer than 256 rows (dense layers, a batch's few pixels at 9x9) would
    /// leave most of a workgroup's 64 pixel lanes idle and the device's cores without
    /// workgroups, and runs `Direct` instead, unless its reduction is split over workgroups
    /// (`k_split`: the weight gradient, whose few rows still fill the device); and that
    /// `Uniform` takes no more rows per invocation than the product has (the weight
    /// gradient's rows are the filter's taps: 75 for a 5x5 filter on 3 channels).
    pub fn default_for_shape(family: Family, gm: usize, gn: usize, k_split: bool) -> TileConfig {
        if family == Family::Uniform && gm < 256 && !k_split {
            return TileConfig::default_for(Family::Direct, gn);
        }
        let mut c = TileConfig::default_for(family, gn);
        if family == Family::Uniform {
            c.tm = c.tm.min(gm.div_ceil(64).next_power_of_two());
        }
        c
    }

    /// Whether the shader can run this configuration: register arrays hold 8 rows, 8 columns
    /// and 32 accumulators; the tiled kernel's workgroup tiles hold BM <= 128 and BN <= 64
    /// (12 KiB, within every adapter's 16 KiB) and its staging needs BN <= threads; every size
    /// is a power of two so that the threads divide the tiles evenly. The uniform kernel
    /// holds 8 pixels and 16 vec4 accumulators per invocation, 64 invocations.
    pub fn valid(&self) -> bool {
        let pow2 = |v: usize| v.is_power_of_two();
        if self.family == Family::Uniform {
            return pow2(self.tm)
                && self.tm <= 8
                && [4, 8, 16, 32].contains(&self.tn)
                && self.tm * self.tn / 4 <= 16
                && self.threads_n == 1
                && self.wg == 64;
        }
        let sizes_ok = pow2(self.tm)
            && pow2(self.tn)
            && pow2(self.threads_n)
            && self.tm <= 8
            && self.tn <= 8
            && self.tm * self.tn <= 32
            && WORKGROUP_SIZES.contains(&self.wg)
            && self.threads_n <= self.wg;
        let tiles_ok = self.bm() <= 128 && self.bn() <= 64 && self.bn() <= self.wg;
        sizes_ok && (self.family == Family::Direct || tiles_ok)
    }

    /// Configurations worth measuring for a product `gn` wide: the register-blocked shapes
    /// whose tile is not much wider than the product.
    pub fn candidates(families: &[Family], gn: usize) -> Vec<TileConfig> {
        let width = gn.next_power_of_two().max(1);
        let mut out = Vec::new();
        for &family in families {
            if family == Family::Uniform {
                for tm in [1, 2, 4, 8] {
                    for tn in [4, 8, 16, 32] {
                        let c = TileConfig::new(family, tm, tn, 1);
                        if c.valid() && tn <= width.max(4) && tm * tn >= 8 {
                            out.push(c);
                        }
                    }
                }
                let d = TileConfig::default_for(family, gn);
                if !out.contains(&d) {
                    out.push(d);
                }
                continue;
            }
            // The direct kernel serves CPU drivers, where a workgroup is a loop: 64 threads.
            let sizes: &[usize] = match family {
                Family::Tiled => &WORKGROUP_SIZES,
                Family::Direct | Family::Uniform => &[64],
            };
            for &wg in sizes {
                for tm in [1, 2, 4, 8] {
                    for tn in [1, 2, 4, 8] {
                        for threads_n in [1, 2, 4, 8, 16, 32] {
                            let c = TileConfig::new(family, tm, tn, threads_n).with_wg(wg);
                            let blocking = tm * tn;
                            if c.valid()
                                && (4..=32).contains(&blocking)
                                && c.bn() <= width.max(4)
                                && c.bm() >= 16
                            {
                                out.push(c);
                            }
                        }
                    }
                }
            }
            let d = TileConfig::default_for(family, gn);
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// Rows of C per workgroup.
    pub fn bm(&self) -> usize {
        self.wg / self.threads_n * self.tm
    }

    /// Columns of C per workgroup.
    pub fn bn(&self) -> usize {
        self.threads_n * self.tn
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {}x{} per thread, {} threads along N of {} (tile {}x{})",
            self.family.name(),
            self.tm,
            self.tn,
            self.threads_n,
            self.wg,
            self.bm(),
            self.bn()
        )
    }

    /// This configuration as a tuning-cache entry, with the times that made it win.
    pub fn to_tuned(&self, images: usize, tuned_us: f64, default_us: f64) -> TunedKernel {
        TunedKernel {
            config: *self,
            images: images as u32,
            tuned_us,
            default_us,
        }
    }
}

/// The kernel choices of one device.
pub struct KernelPolicy {
    /// The family by adapter type.
    native: Family,
    /// A family forced by `ASNA_CONV` or by a test; it bypasses the tuned table.
    forced: Option<Family>,
    /// Whether lookups return tuned entries (false: every shape runs its family's default).
    pub use_tuned: bool,
    /// Winners measured by `asna tune` for this adapter, by shape key.
    pub tuned: BTreeMap<String, TunedKernel>,
    /// Shape keys dispatched while recording (`asna tune` collects the model's shapes).
    pub recording: Option<BTreeMap<String, Seen>>,
}

impl KernelPolicy {
    /// The policy for an adapter: its native family, `ASNA_CONV=tiled|direct|uniform`, and this
    /// adapter's tuning-cache entries unless `ASNA_TUNE=off`. A bad override or an unreadable
    /// cache is reported once on stderr and ignored.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> KernelPolicy {
        let forced = match std::env::var("ASNA_CONV") {
            Ok(v) => {
                let f = Family::parse(&v);
                if f.is_none() {
                    eprintln!(
                        "warning: ASNA_CONV={v:?} ignored (expected tiled, direct or uniform)"
                    );
                }
                f
            }
            Err(_) => None,
        };
        let use_tuned = !std::env::var("ASNA_TUNE").is_ok_and(|v| v == "off" || v == "0");
        let mut tuned = BTreeMap::new();
        if use_tuned {
            if let Some(path) = tuning::cache_path() {
                match tuning::load(&path, &tuning::adapter_key(info)) {
                    Ok(table) => tuned = table,
                    Err(e) => eprintln!("warning: tuning cache ignored: {e:#}"),
                }
            }
        }
        KernelPolicy {
            native: Family::native(info.device_type),
            forced,
            use_tuned,
            tuned,
            recording: None,
        }
    }

    /// The family that runs shapes without a tuned entry.
    pub fn family(&self) -> Family {
        self.forced.unwrap_or(self.native)
    }

    /// Forces one family for every shape (None: back to the adapter's choice and the cache).
    pub fn force_family(&mut self, family: Option<Family>) {
        self.forced = family;
    }

    pub fn forced_family(&self) -> Option<Family> {
        self.forced
    }

    /// The families worth timing on this adapter: a CPU driver runs only the CPU kernels
    /// well (workgroup memory is ordinary memory there and barriers are costly).
    pub fn tune_families(&self) -> Vec<Family> {
        match self.native {
            Family::Direct | Family::Uniform => vec![Family::Uniform, Family::Direct],
            Family::Tiled => vec![Family::Tiled, Family::Direct],
        }
    }

    /// The configuration for the shape `key` (a product `gm` x `gn`, its reduction split over
    /// workgroups when `k_split`, dispatched for `images` images): a forced family takes its
    /// default; otherwise the tuned entry if `asna tune` measured this shape and the shader
    /// can run it, else the default for the shape.
    pub fn choose(
        &mut self,
        key: &str,
        images: usize,
        gm: usize,
        gn: usize,
        k_split: bool,
    ) -> TileConfig {
        if let Some(seen) = &mut self.recording {
            let e = seen.entry(key.to_string()).or_default();
            e.images = e.images.max(images);
            e.calls += 1;
        }
        if self.forced.is_none() && self.use_tuned {
            if let Some(t) = self.tuned.get(key).filter(|t| t.config.valid()) {
                return t.config;
            }
        }
        if self.forced.is_some() {
            return TileConfig::default_for(self.family(), gn);
        }
        TileConfig::default_for_shape(self.family(), gm, gn, k_split)
    }
}
