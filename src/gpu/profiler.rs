//! GPU time per kernel from timestamp queries (where the adapter has TIMESTAMP_QUERY), for
//! `asna bench --profile`. Each profiled dispatch runs in its own compute pass whose start and
//! end are stamped; totals are kept per kernel label with the work it did (FLOPs, bytes).

use std::collections::BTreeMap;

const CAPACITY: u32 = 1024; // dispatches per batch; the recorder submits before overflowing

#[derive(Clone, Debug, Default)]
pub struct KernelStats {
    pub calls: u64,
    pub seconds: f64,
    pub flops: f64,
    pub bytes: f64,
}

pub struct Profiler {
    enabled: bool,
    query_set: Option<wgpu::QuerySet>,
    resolve: Option<wgpu::Buffer>,
    readback: Option<wgpu::Buffer>,
    pending: Vec<(&'static str, (f64, f64))>,
    resolved: usize,
    period_ns: f64,
    pub stats: BTreeMap<&'static str, KernelStats>,
}

impl Profiler {
    pub fn disabled() -> Self {
        Profiler {
            enabled: false,
            query_set: None,
            resolve: None,
            readback: None,
            pending: Vec::new(),
            resolved: 0,
            period_ns: 1.0,
            stats: BTreeMap::new(),
        }
    }

    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, features: wgpu::Features) -> Self {
        let mut p = Profiler::disabled();
        if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            p.query_set = Some(device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profiler"),
                ty: wgpu::QueryType::Timestamp,
                count: CAPACITY * 2,
            }));
            let size = CAPACITY as u64 * 2 * 8;
            p.resolve = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profiler resolve"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }));
            p.readback = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profiler readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            p.period_ns = queue.get_timestamp_period() as f64;
        }
        p
    }

    pub fn available(&self) -> bool {
        self.query_set.is_some()
    }

    /// Turns profiling on (if the adapter can) and clears the totals.
    pub fn set_enabled(&mut self, on: bool) -> bool {
        self.enabled = on && self.available();
        self.stats.clear();
        self.enabled
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn begin(
        &mut self,
        label: &'static str,
        work: (f64, f64),
    ) -> Option<(wgpu::QuerySet, u32)> {
        if !self.enabled {
            return None;
        }
        let i = self.pending.len() as u32;
        self.pending.push((label, work));
        self.query_set.clone().map(|q| (q, i * 2))
    }

    pub(crate) fn full(&self) -> bool {
        self.enabled && self.pending.len() as u32 >= CAPACITY
    }

    pub(crate) fn resolve(&mut self, enc: &mut wgpu::CommandEncoder) {
        if !self.enabled || self.pending.is_empty() {
            return;
        }
        let (qs, rb, out) = (
            self.query_set.as_ref().unwrap(),
            self.resolve.as_ref().unwrap(),
            self.readback.as_ref().unwrap(),
        );
        let n = self.pending.len() as u32 * 2;
        enc.resolve_query_set(qs, 0..n, rb, 0);
        enc.copy_buffer_to_buffer(rb, 0, out, 0, n as u64 * 8);
        self.resolved = self.pending.len();
    }

    /// After the batch's submit: waits for it and adds its kernel times to the totals.
    pub(crate) fn collect(&mut self, device: &wgpu::Device) {
        if !self.enabled || self.resolved == 0 {
            return;
        }
        let out = self.readback.as_ref().unwrap();
        let n = self.resolved;
        out.slice(..n as u64 * 16)
            .map_async(wgpu::MapMode::Read, |_| {});
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
        if let Ok(view) = out.slice(..n as u64 * 16).get_mapped_range() {
            let ticks: &[u64] = bytemuck::cast_slice(&view);
            for (i, (label, (flops, bytes))) in self.pending.iter().enumerate() {
                let dt =
                    ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * self.period_ns * 1e-9;
                let s = self.stats.entry(label).or_default();
                s.calls += 1;
                s.seconds += dt;
                s.flops += flops;
                s.bytes += bytes;
            }
        }
        out.unmap();
        self.pending.clear();
        self.resolved = 0;
    }
}

impl super::Gpu {
    /// Seconds of one run of `run` (which should end by waiting for the GPU, e.g. with a
    /// download or `sync`): GPU time summed over its dispatches from timestamp queries where
    /// the adapter has them, wall time otherwise. Used by `asna tune` and the kernel benches.
    pub fn time_run(&self, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
        self.sync()?;
        let gpu_clock = self.profiler.borrow_mut().set_enabled(true);
        let t = std::time::Instant::now();
        let result = run().and_then(|_| self.sync());
        let wall = t.elapsed().as_secs_f64();
        let mut prof = self.profiler.borrow_mut();
        let gpu_seconds: f64 = prof.stats.values().map(|s| s.seconds).sum();
        prof.set_enabled(false);
        result?;
        Ok(if gpu_clock { gpu_seconds } else { wall })
    }
}
