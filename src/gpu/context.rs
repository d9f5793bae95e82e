//! The GPU context: adapter choice, device with the adapter's own limits, and the recorder
//! that batches dispatches into command encoders.

use super::buffer::BufferPool;
use super::pipeline::PipelineCache;
use super::profiler::Profiler;
use anyhow::{anyhow, bail, Result};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a user passes to pick an adapter: `--adapter <substring>`, or the usual
/// `WGPU_ADAPTER_NAME` / `WGPU_BACKEND` / `WGPU_POWER_PREF` environment variables.
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    pub name_contains: Option<String>,
}

impl AdapterChoice {
    pub fn from_arg(arg: Option<&str>) -> Self {
        let name = arg
            .map(str::to_string)
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .filter(|s| !s.is_empty());
        AdapterChoice {
            name_contains: name,
        }
    }
}

pub const NO_ADAPTER_HELP: &str = "no GPU adapter found: install a GPU driver with Vulkan, Metal, DX12 or OpenGL ES 3.1 support, \
or Mesa's software Vulkan driver (lavapipe) on Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`";

pub fn instance() -> wgpu::Instance {
    // Mesa's device-select layer probes the window system to order GPUs and prints errors on
    // headless machines; asna orders adapters itself, so the layer is switched off.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    // OpenGL ES (through EGL) serves GPUs without a Vulkan driver; it is chosen after the
    // others (`choose_adapter`).
    desc.backends =
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12 | wgpu::Backends::GL;
    // Validation layers cost time and are not installed on most machines.
    desc.flags = wgpu::InstanceFlags::empty();
    wgpu::Instance::new(desc.with_env())
}

pub fn enumerate() -> Vec<wgpu::Adapter> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
}

/// The backends asna is built with, by the names `WGPU_BACKEND` takes for them.
const BACKEND_NAMES: &[(&str, &[&str])] = &[
    ("vulkan", &["vulkan", "vk"]),
    ("metal", &["metal", "mtl"]),
    ("dx12", &["dx12", "d3d12"]),
    ("gl", &["gl", "gles", "opengl"]),
];

/// Refuses a `WGPU_BACKEND` that names no backend asna is built with: wgpu would only log a
/// warning and find no adapter, which reads as a missing driver.
pub fn check_backend_env() -> Result<()> {
    let Some(value) = std::env::var_os("WGPU_BACKEND") else {
        return Ok(());
    };
    let expected = BACKEND_NAMES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    let value = value.to_string_lossy();
    // wgpu reads a comma-separated list, case-insensitive, with spaces trimmed.
    for item in value.split(',') {
        let name = item.trim().to_lowercase();
        let known = |(_, aliases): &(&str, &[&str])| aliases.contains(&name.as_str());
        if !BACKEND_NAMES.iter().any(known) {
            bail!(
                "WGPU_BACKEND={value}: unknown backend \"{}\" (expected one or more of {expected}, comma-separated)",
                item.trim()
            );
        }
    }
    Ok(())
}

/// Every adapter, after checking `WGPU_BACKEND`.
pub fn try_enumerate() -> Result<Vec<wgpu::Adapter>> {
    check_backend_env()?;
    Ok(enumerate())
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Whether an adapter's name contains `needle` (lower case). Mesa's software Vulkan driver,
/// lavapipe, names its adapter "llvmpipe (...)", so "lavapipe" finds it too.
pub fn adapter_name_matches(name: &str, needle: &str) -> bool {
    let name = name.to_lowercase();
    name.contains(needle) || (needle == "lavapipe" && name.contains("llvmpipe"))
}

/// Preference order: Vulkan, Metal and DX12 adapters before OpenGL ES ones (GL lacks
/// subgroups, f16 and timestamp queries, and its compute runs through a translation layer),
/// and within each, high-performance adapters first: discrete, integrated, virtual, other,
/// then CPU (lavapipe, llvmpipe).
pub fn choose_adapter(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    let mut adapters = try_enumerate()?;
    if adapters.is_empty() {
        bail!("{NO_ADAPTER_HELP}");
    }
    if let Some(want) = &choice.name_contains {
        let needle = want.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        adapters.retain(|a| adapter_name_matches(&a.get_info().name, &needle));
        if adapters.is_empty() {
            bail!(
                "no adapter name contains \"{want}\"; available: {}",
                names.join(", ")
            );
        }
    }
    let low_power = std::env::var("WGPU_POWER_PREF")
        .map(|v| v.eq_ignore_ascii_case("low"))
        .unwrap_or(false);
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        preference(info.backend, info.device_type, low_power)
    });
    Ok(adapters.remove(0))
}

/// The sort key of `choose_adapter`: smaller is preferred. Every OpenGL ES adapter comes after
/// every other, whatever its type; `low_power` (WGPU_POWER_PREF=low) puts integrated GPUs
/// before discrete ones.
pub fn preference(
    backend: wgpu::Backend,
    device_type: wgpu::DeviceType,
    low_power: bool,
) -> (bool, u32) {
    let r = type_rank(device_type);
    let r = if low_power && r == 1 { 0 } else { r + 1 };
    (backend == wgpu::Backend::Gl, r)
}

/// Features the engine uses where the adapter offers them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::SUBGROUP
        | wgpu::Features::SHADER_F16
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub(crate) pool: Rc<RefCell<BufferPool>>,
    pub(crate) pipelines: RefCell<PipelineCache>,
    pub(crate) recorder: RefCell<super::recorder::Recorder>,
    pub profiler: RefCell<Profiler>,
    errors: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Set from another thread to stop the computation in progress (`stop_when`).
    stop: RefCell<Option<Arc<AtomicBool>>>,
    /// Which convolution kernel configuration runs for each shape on this device
    /// (src/ops/conv/policy.rs); it is per device, so the device holds it.
    pub kernels: RefCell<crate::ops::conv::KernelPolicy>,
    /// The open trace, if any (src/gpu/trace.rs).
    pub(crate) trace: RefCell<Option<super::trace::Trace>>,
    /// Tensors derived from others' contents, kept until those are written (derived.rs).
    pub derived: RefCell<super::derived::DerivedTensors>,
    /// While `pipelines_needed` runs a pass: the pipelines its dispatches ask for (the
    /// dispatches themselves are left out).
    pub(crate) collecting: RefCell<Option<Vec<super::pipeline::PipelineRequest>>>,
    /// wgpu's pipeline cache on disk, where the adapter has one (pipeline_disk.rs).
    pub(crate) disk_cache: Option<super::pipeline_disk::DiskPipelineCache>,
    /// Called after the first dispatch of each new pipeline has run (`on_new_pipelines`).
    pub(crate) new_pipeline_hook: RefCell<Option<Box<dyn FnMut() -> bool>>>,
}

impl Gpu {
    /// Opens the adapter chosen by `choice`; errors are one line and say how to get an adapter.
    pub fn new(choice: &AdapterChoice) -> Result<Rc<Gpu>> {
        let adapter = choose_adapter(choice)?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & (wanted_features() | wgpu::Features::PIPELINE_CACHE);
        let desc = wgpu::DeviceDescriptor {
            label: Some("asna"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| anyhow!("could not open GPU device \"{}\": {e}", info.name))?;
        // Errors raised asynchronously by the device (out of memory, device loss, a bug caught
        // by validation) are kept and reported by the next `sync`, as one line.
        let errors: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let slot = errors.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                *s = Some(first_line(&e.to_string()));
            }
        }));
        let pool = Rc::new(RefCell::new(BufferPool::default()));
        let recorder = super::recorder::Recorder::new(&device, &limits);
        let profiler = Profiler::new(&device, &queue, features);
        let disk_cache = features
            .contains(wgpu::Features::PIPELINE_CACHE)
            .then(|| super::pipeline_disk::path_for(&info))
            .flatten()
            .map(|path| super::pipeline_disk::DiskPipelineCache::open(&device, &path));
        let mut kernels = crate::ops::conv::KernelPolicy::for_adapter(&info);
        kernels.enable_shared_loads(&info, features);
        Ok(Rc::new(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            pool,
            pipelines: RefCell::new(PipelineCache::default()),
            recorder: RefCell::new(recorder),
            profiler: RefCell::new(profiler),
            errors,
            stop: RefCell::new(None),
            kernels: RefCell::new(kernels),
            trace: RefCell::new(None),
            derived: RefCell::new(Default::default()),
            collecting: RefCell::new(None),
            disk_cache,
            new_pipeline_hook: RefCell::new(None),
        }))
    }

    /// Opens the default adapter (environment variables respected).
    pub fn default_adapter() -> Result<Rc<Gpu>> {
        Gpu::new(&AdapterChoice::from_arg(None))
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, {})",
            self.info.name, self.info.backend, self.info.device_type, self.info.driver
        )
    }

    /// The pipeline cache new pipelines go through, if the adapter has one.
    pub(crate) fn disk_pipelines(&self) -> Option<&wgpu::PipelineCache> {
        self.disk_cache.as_ref().map(|d| &d.cache)
    }

    /// Where this device's pipeline cache is kept on disk (None: the adapter has none).
    pub fn pipeline_cache_file(&self) -> Option<&std::path::Path> {
        self.disk_cache.as_ref().map(|d| d.path())
    }

    /// Submits everything recorded so far. Nothing waits.
    pub fn flush(&self) {
        self.recorder.borrow_mut().flush_with(
            &self.device,
            &self.queue,
            &mut self.profiler.borrow_mut(),
        );
    }

    /// Waits until the GPU has finished all submitted work.
    pub fn sync(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("GPU: {e}"))?;
        self.check_errors()?;
        if self.stop_requested() {
            bail!("stopped: the computation was interrupted");
        }
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        matches!(&*self.stop.borrow(), Some(flag) if flag.load(Ordering::Relaxed))
    }

    /// Makes every later wait for the GPU (`sync`, and so every download) fail once `flag` is
    /// set, from any thread: a long computation (a large image) then stops between two GPU
    /// batches instead of running to its end. `None` removes the flag.
    pub fn stop_when(&self, flag: Option<Arc<AtomicBool>>) {
        *self.stop.borrow_mut() = flag;
    }

    /// The first asynchronous device error since the last check, as an error.
    pub fn check_errors(&self) -> Result<()> {
        let mut s = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match s.take() {
            Some(msg) => Err(anyhow!("GPU error on {}: {msg}", self.info.name)),
            None => Ok(()),
        }
    }

    /// The largest storage binding; tensors beyond it must be split by the caller.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::preference;
    use wgpu::{Backend, DeviceType};

    #[test]
    fn gl_adapters_come_after_every_other_backend() {
        let mut adapters = vec![
            (Backend::Gl, DeviceType::DiscreteGpu),
            (Backend::Vulkan, DeviceType::Cpu),
            (Backend::Gl, DeviceType::IntegratedGpu),
            (Backend::Metal, DeviceType::IntegratedGpu),
            (Backend::Dx12, DeviceType::VirtualGpu),
            (Backend::Vulkan, DeviceType::DiscreteGpu),
            (Backend::Gl, DeviceType::Cpu),
        ];
        adapters.sort_by_key(|&(b, t)| preference(b, t, false));
        assert_eq!(
            adapters,
            [
                (Backend::Vulkan, DeviceType::DiscreteGpu),
                (Backend::Metal, DeviceType::IntegratedGpu),
                (Backend::Dx12, DeviceType::VirtualGpu),
                (Backend::Vulkan, DeviceType::Cpu),
                (Backend::Gl, DeviceType::DiscreteGpu),
                (Backend::Gl, DeviceType::IntegratedGpu),
                (Backend::Gl, DeviceType::Cpu),
            ]
        );
        // Low power: integrated before discrete, GL still last.
        adapters.sort_by_key(|&(b, t)| preference(b, t, true));
        assert_eq!(adapters[0], (Backend::Metal, DeviceType::IntegratedGpu));
        assert_eq!(adapters[1], (Backend::Vulkan, DeviceType::DiscreteGpu));
        assert!(adapters[4..].iter().all(|a| a.0 == Backend::Gl));
    }
}

impl Drop for Gpu {
    /// Keeps the pipelines this device compiled for later runs (pipeline_disk.rs).
    fn drop(&mut self) {
        if let Some(disk) = &self.disk_cache {
            if !self.pipelines.borrow().created.is_empty() {
                disk.save();
            }
        }
    }
}
