//! The GPU layer: context (adapter, device), buffers and tensors, tensors derived from others
//! and kept until those are written (src/gpu/derived.rs), the pipeline cache, the
//! recorder that batches dispatches, the timestamp profiler, and the tuning cache (the file of
//! per-adapter kernel choices that the convolution's policy, src/ops/conv/policy.rs, reads).

pub mod buffer;
pub mod context;
pub mod derived;
pub mod pipeline;
pub mod pipeline_disk;
pub mod profiler;
pub mod recorder;
pub mod trace;
pub mod tuning;

pub use buffer::{DType, PooledBuffer, Tensor};
pub use context::{AdapterChoice, Gpu};
pub use pipeline::{Access, Kernel, PipelineConfig, UNIFORM_WINDOW};
pub use trace::{Trace, TracedCommand};

/// Workgroups for `threads` threads of a 256-wide kernel, folded into two dimensions so that
/// large tensors stay within the 65535 workgroups-per-dimension limit. Kernels recover the
/// linear index as `gid.x + gid.y * nwg.x * 256`.
pub fn grid_1d(threads: usize) -> [u32; 3] {
    grid_1d_of(threads, 256)
}

/// `grid_1d` for a kernel of `workgroup` threads (index `gid.x + gid.y * nwg.x * workgroup`).
pub fn grid_1d_of(threads: usize, workgroup: usize) -> [u32; 3] {
    let groups = threads.div_ceil(workgroup).max(1);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        let x = groups.div_ceil(y);
        [x as u32, y as u32, 1]
    }
}

/// The whole of `buffer`, as a storage binding.
pub fn whole(buffer: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: None,
    }
}

/// The `UNIFORM_WINDOW` bytes of `buffer` from `offset_vec4` vec4 on, as a uniform binding.
pub fn uniform_window(buffer: &wgpu::Buffer, offset_vec4: usize) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer,
        offset: (offset_vec4 * 16) as u64,
        size: wgpu::BufferSize::new(UNIFORM_WINDOW),
    }
}

/// Bit pattern of an f32 for a parameter block.
pub fn f(x: f32) -> u32 {
    x.to_bits()
}

impl Gpu {
    /// Records one dispatch of `kernel`. `buffers[i]` is bound at binding i + 1, `params` is
    /// the uniform block at binding 0. `work` = (FLOPs, bytes moved) for the profiler.
    pub fn dispatch(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
        work: (f64, f64),
    ) {
        self.dispatch_as(kernel, DType::F32, constants, params, buffers, groups, work)
    }

    /// `dispatch` of the variant of `kernel` whose storage arrays hold `dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_as(
        &self,
        kernel: &Kernel,
        dtype: DType,
        constants: &[(&'static str, f64)],
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
        work: (f64, f64),
    ) {
        let bindings: Vec<wgpu::BufferBinding> = buffers.iter().map(|b| whole(b)).collect();
        self.dispatch_bindings(kernel, dtype, constants, params, &bindings, groups, work)
    }

    /// `dispatch_as` with explicit buffer ranges (uniform windows bind 64 KiB at an offset).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_bindings(
        &self,
        kernel: &Kernel,
        dtype: DType,
        constants: &[(&'static str, f64)],
        params: &[u32],
        buffers: &[wgpu::BufferBinding],
        groups: [u32; 3],
        work: (f64, f64),
    ) {
        assert!(
            dtype == DType::F32 || kernel.f16,
            "{}::{} runs on f32 tensors only (f16 is for the scoring forward pass), got {dtype:?}",
            kernel.file,
            kernel.entry
        );
        assert_eq!(
            buffers.len(),
            kernel.bindings.len(),
            "{}::{}: wrong number of buffers",
            kernel.file,
            kernel.entry
        );
        if groups.contains(&0) {
            return;
        }
        if let Some(requests) = self.collecting.borrow_mut().as_mut() {
            requests.push((*kernel, constants.to_vec(), dtype));
            return;
        }
        {
            let mut derived = self.derived.borrow_mut();
            if !derived.is_empty() {
                for (b, access) in buffers.iter().zip(kernel.bindings) {
                    if *access == Access::ReadWrite {
                        derived.written(b.buffer);
                    }
                }
            }
        }
        self.traced(|t| {
            t.dispatch(
                PipelineConfig::new(kernel, constants, dtype),
                params,
                buffers,
                groups,
            )
        });
        let created = self.pipelines_created();
        let pipeline = self.pipelines.borrow_mut().get(
            &self.device,
            self.disk_pipelines(),
            kernel,
            constants,
            dtype,
        );
        let new = self.pipelines_created() > created;
        let full = self.recorder.borrow_mut().dispatch(
            &self.device,
            &pipeline,
            params,
            buffers,
            groups,
            &mut self.profiler.borrow_mut(),
            kernel.entry,
            work,
        );
        if new && self.new_pipeline_hook.borrow().is_some() {
            // A driver may compile a pipeline when it first runs rather than when it is
            // created: waiting for this first dispatch makes the hook tick as each is ready.
            let _ = self.sync();
            let hook = self.new_pipeline_hook.borrow_mut().take();
            if let Some(mut hook) = hook {
                if hook() {
                    *self.new_pipeline_hook.borrow_mut() = Some(hook);
                }
            }
        } else if full {
            self.flush();
        }
    }

    /// Calls `hook` after the first dispatch of each pipeline created from now on has run
    /// (each is then compiled, on drivers that compile at first use), until it returns false
    /// or `None` replaces it.
    pub fn on_new_pipelines(&self, hook: Option<Box<dyn FnMut() -> bool>>) {
        *self.new_pipeline_hook.borrow_mut() = hook;
    }

    /// The pipelines `pass` would create that do not exist yet, in order of first use: `pass`
    /// runs with every dispatch left out (nothing is computed), and the derived tensors it
    /// cached, never computed, are dropped after.
    pub fn pipelines_needed(&self, pass: impl FnOnce()) -> Vec<pipeline::PipelineRequest> {
        self.flush();
        *self.collecting.borrow_mut() = Some(Vec::new());
        pass();
        let requests = self.collecting.borrow_mut().take().unwrap_or_default();
        *self.derived.borrow_mut() = Default::default();
        let cache = self.pipelines.borrow();
        let mut needed: Vec<pipeline::PipelineRequest> = Vec::new();
        for r in requests {
            let seen = needed.iter().any(|n| {
                n.0.file == r.0.file && n.0.entry == r.0.entry && n.1 == r.1 && n.2 == r.2
            });
            if !seen && !cache.has(&r.0, &r.1, r.2) {
                needed.push(r);
            }
        }
        needed
    }

    /// How many pipelines this device has created.
    pub fn pipelines_created(&self) -> usize {
        self.pipelines.borrow().created.len()
    }

    /// Opens a trace: from now on every buffer and command is logged (src/gpu/trace.rs).
    /// Pending work is submitted first, so that the trace holds only what follows.
    pub fn begin_trace(&self) {
        self.flush();
        *self.trace.borrow_mut() = Some(Trace::default());
    }

    /// Closes the trace opened by `begin_trace` and returns it (empty if none was open).
    pub fn end_trace(&self) -> Trace {
        self.flush();
        self.trace.borrow_mut().take().unwrap_or_default()
    }

    /// Runs `log` on the open trace, if any.
    pub(crate) fn traced(&self, log: impl FnOnce(&mut Trace)) {
        if let Some(t) = self.trace.borrow_mut().as_mut() {
            log(t);
        }
    }

    pub fn compiled_pipelines(&self) -> usize {
        self.pipelines.borrow().created.len()
    }

    /// Every pipeline created on this device so far, in order of creation.
    pub fn created_pipelines(&self) -> Vec<PipelineConfig> {
        self.pipelines.borrow().created.clone()
    }
}
