//! Kernel policy: which convolution family and tile configuration runs for each shape on one
//! device. It opens with the device (the family native to the adapter type, the `ASNA_CONV`
//! override, and the winners `asna tune` stored in the tuning cache, src/gpu/tuning.rs) and
//! changes only through its methods: `asna tune` records shapes and replaces the table,
//! `asna bench` switches tuned entries off and on, tests force a family. The ops ask `choose`;
//! the rules it applies (defaults, limits, search spaces) are the families' own.

use super::{ConvGeom, Family, Product, Role, TileConfig, FAMILIES};
use crate::gpu::tuning;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The winner for one kernel shape, with the times that made it win (a tuning-cache entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedKernel {
    /// Family and tile, stored flat: `kernel`, `tm`, `tn`, `threads_n`, `wg`.
    #[serde(flatten)]
    pub config: TileConfig,
    /// Images in the measured batch.
    pub images: u32,
    pub tuned_us: f64,
    pub default_us: f64,
}

/// How a recorded shape was used: the most images it was dispatched for, and how often.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub images: usize,
    pub calls: usize,
}

/// The fraction of the default's time a candidate must beat to replace it: below that,
/// timing noise rather than the kernel decides.
pub const MIN_WIN: f64 = 0.02;

/// The fastest of `timed` (configuration, seconds) if it is more than `MIN_WIN` faster than
/// the default, else the default with its own time.
pub fn pick_winner<C: Copy>(default: (C, f64), timed: &[(C, f64)]) -> (C, f64) {
    let fastest = timed.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    match fastest {
        Some((c, s)) if s < (1.0 - MIN_WIN) * default.1 => (c, s),
        _ => default,
    }
}

/// The kernel choices of one device.
pub struct KernelPolicy {
    device_type: wgpu::DeviceType,
    /// The family by adapter type.
    native: Family,
    /// A family forced by `ASNA_CONV` or by a test; it bypasses the tuned table.
    forced: Option<Family>,
    /// Whether lookups return tuned entries (false: every shape runs its family's default).
    use_tuned: bool,
    /// Winners measured by `asna tune` for this adapter, by shape key.
    tuned: BTreeMap<String, TunedKernel>,
    /// Shape keys dispatched while recording (`asna tune` collects the model's shapes).
    recording: Option<BTreeMap<String, Seen>>,
    /// The configurations that ran each shape key while noting (`asna bench` reports them).
    used: Option<BTreeMap<String, Vec<TileConfig>>>,
    /// Whether kernels that have a variant sharing their weight loads through subgroups of 8
    /// invocations run it (the adapter's subgroups are 8 wide and `ASNA_SUBGROUPS` is not
    /// `off`); off while a plan for other adapters is recorded.
    shared_loads: bool,
}

impl KernelPolicy {
    /// The policy for an adapter: its native family, `ASNA_CONV=<family name>`, and this
    /// adapter's tuning-cache entries unless `ASNA_TUNE=off`. A bad override or an unreadable
    /// cache is reported once on stderr and ignored.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> KernelPolicy {
        let forced = match std::env::var("ASNA_CONV") {
            Ok(v) => {
                let f = Family::parse(&v);
                if f.is_none() {
                    let names: Vec<&str> = FAMILIES.iter().map(|f| f.name()).collect();
                    eprintln!(
                        "warning: ASNA_CONV={v:?} ignored (expected {})",
                        names.join(", ")
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
            device_type: info.device_type,
            native: Family::native(info.device_type),
            forced,
            use_tuned,
            tuned,
            recording: None,
            used: None,
            shared_loads: false,
        }
    }

    /// Turns on the subgroup variants where a device of `features` has subgroups exactly 8
    /// invocations wide (every subgroup, as llvmpipe's on 256-bit vectors), unless
    /// `ASNA_SUBGROUPS=off`.
    pub fn enable_shared_loads(&mut self, info: &wgpu::AdapterInfo, features: wgpu::Features) {
        let off = std::env::var("ASNA_SUBGROUPS").is_ok_and(|v| v == "off" || v == "0");
        self.shared_loads = !off
            && features.contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8;
    }

    /// Whether the subgroup variants run (see `enable_shared_loads`).
    pub fn shared_loads(&self) -> bool {
        self.shared_loads
    }

    /// Switches the subgroup variants off, or back on after that where `enable_shared_loads`
    /// turned them on (never on otherwise: the device may lack subgroups); returns the
    /// previous setting. Their results equal the plain kernels' to the bit.
    pub fn set_shared_loads(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.shared_loads, on)
    }

    /// The configuration for one product of one layer: a forced family takes its default tile;
    /// otherwise the tuned entry if `asna tune` measured this shape and the shader can run it,
    /// else `default_config`. Records the shape while recording.
    pub fn choose(&mut self, product: Product, g: &ConvGeom) -> TileConfig {
        let key = super::tune_key(product, g);
        if let Some(seen) = &mut self.recording {
            let e = seen.entry(key.clone()).or_default();
            e.images = e.images.max(g.n);
            e.calls += 1;
        }
        if self.forced.is_none() && self.use_tuned {
            if let Some(t) = self.tuned.get(&key).filter(|t| t.config.valid()) {
                return t.config;
            }
        }
        self.default_config(product, g)
    }

    /// What `choose` runs for a shape without a tuned entry (what `asna tune` measures
    /// candidates against).
    pub fn default_config(&self, product: Product, g: &ConvGeom) -> TileConfig {
        match self.forced {
            Some(family) => family.default_tile(product.gemm(g).1),
            None => self.native.default_for(product, g),
        }
    }

    /// The family that runs shapes without a tuned entry.
    pub fn family(&self) -> Family {
        self.forced.unwrap_or(self.native)
    }

    /// Chooses as on an adapter of `device_type` (its native family and default rules) and
    /// returns the type chosen for before; a plan recorded here for another kind of adapter
    /// (src/plan/record.rs) runs what that adapter would.
    pub fn choose_as(&mut self, device_type: wgpu::DeviceType) -> wgpu::DeviceType {
        self.native = Family::native(device_type);
        std::mem::replace(&mut self.device_type, device_type)
    }

    /// Forces one family for every shape (None: back to the adapter's choice and the cache).
    pub fn force_family(&mut self, family: Option<Family>) {
        self.forced = family;
    }

    /// The families worth timing on this adapter: its native one, then every family that
    /// names this adapter type a candidate (`ConvFamily::role`).
    fn tune_families(&self) -> Vec<Family> {
        let mut out = vec![self.native];
        out.extend(
            FAMILIES
                .iter()
                .copied()
                .filter(|f| f.role(self.device_type) == Role::Candidate && *f != self.native),
        );
        out
    }

    /// The configurations `asna tune` times for a product `gn` wide: every candidate of every
    /// family worth timing here.
    pub fn candidates(&self, gn: usize) -> Vec<TileConfig> {
        self.tune_families()
            .into_iter()
            .flat_map(|f| f.candidates(gn))
            .collect()
    }

    /// The batch `asna tune` times at by default: a CPU driver at one pair (its kernels take
    /// seconds).
    pub fn tuning_batch(&self) -> usize {
        if self.device_type == wgpu::DeviceType::Cpu {
            1
        } else {
            16
        }
    }

    /// Whether `choose` returns tuned entries.
    pub fn uses_tuned(&self) -> bool {
        self.use_tuned
    }

    /// Switches tuned entries on or off (off: every shape runs its default); returns the
    /// previous setting.
    pub fn set_use_tuned(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.use_tuned, on)
    }

    /// This adapter's tuned entries, by shape key.
    pub fn tuned(&self) -> &BTreeMap<String, TunedKernel> {
        &self.tuned
    }

    /// Replaces the tuned entries (after `asna tune` saved new winners).
    pub fn set_tuned(&mut self, table: BTreeMap<String, TunedKernel>) {
        self.tuned = table;
    }

    /// Sets the tuned entry of one shape key.
    pub fn set_tuned_entry(&mut self, key: String, entry: TunedKernel) {
        self.tuned.insert(key, entry);
    }

    /// Starts recording the shape of every product `choose` is asked for.
    pub fn start_recording(&mut self) {
        self.recording = Some(BTreeMap::new());
    }

    /// Stops recording and returns the shapes seen since `start_recording`.
    pub fn take_recording(&mut self) -> BTreeMap<String, Seen> {
        self.recording.take().unwrap_or_default()
    }

    /// Starts noting the configuration that runs each product (after `ConvFamily::resolve`).
    pub fn start_noting_use(&mut self) {
        self.used = Some(BTreeMap::new());
    }

    /// Notes that `cfg` ran `product` of `g`, while noting.
    pub fn note_use(&mut self, product: Product, g: &ConvGeom, cfg: &TileConfig) {
        if let Some(used) = &mut self.used {
            let e = used.entry(super::tune_key(product, g)).or_default();
            if !e.contains(cfg) {
                e.push(*cfg);
            }
        }
    }

    /// Stops noting and returns, by shape key, every configuration that ran it.
    pub fn take_use(&mut self) -> BTreeMap<String, Vec<TileConfig>> {
        self.used.take().unwrap_or_default()
    }
}
