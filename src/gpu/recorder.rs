//! Records dispatches into one command encoder and submits them in batches. Each dispatch's
//! small parameter block goes into a ring of 256-byte slots that is uploaded once per batch,
//! so recording allocates no buffers. Reading back is the only thing that waits.

use super::profiler::Profiler;

/// Uniform offsets must be multiples of min_uniform_buffer_offset_alignment (at most 256).
pub const PARAM_SLOT: u64 = 256;
const PARAM_SLOTS: u64 = 2048;
/// Submitting every so many dispatches lets the GPU start while the CPU records the rest.
const DISPATCHES_PER_SUBMIT: u32 = 192;

pub struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    params_cpu: Vec<u8>,
    params_gpu: wgpu::Buffer,
    used_slots: u64,
    dispatches: u32,
    pub total_dispatches: u64,
    pub total_submits: u64,
}

impl Recorder {
    pub fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Self {
        assert!(limits.min_uniform_buffer_offset_alignment as u64 <= PARAM_SLOT);
        let params_gpu = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params ring"),
            size: PARAM_SLOT * PARAM_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Recorder {
            encoder: None,
            params_cpu: Vec::with_capacity((PARAM_SLOT * PARAM_SLOTS) as usize),
            params_gpu,
            used_slots: 0,
            dispatches: 0,
            total_dispatches: 0,
            total_submits: 0,
        }
    }

    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    pub fn flush_with(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        profiler: &mut Profiler,
    ) {
        if let Some(mut enc) = self.encoder.take() {
            profiler.resolve(&mut enc);
            if self.used_slots > 0 {
                queue.write_buffer(&self.params_gpu, 0, &self.params_cpu);
            }
            queue.submit([enc.finish()]);
            profiler.collect(device);
            self.total_submits += 1;
        }
        self.params_cpu.clear();
        self.used_slots = 0;
        self.dispatches = 0;
    }

    pub fn flush(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) {
        let mut p = Profiler::disabled();
        self.flush_with(device, queue, &mut p);
    }

    pub fn clear(&mut self, device: &wgpu::Device, buf: &wgpu::Buffer, size: u64) {
        self.encoder(device).clear_buffer(buf, 0, Some(size));
    }

    pub fn copy(
        &mut self,
        device: &wgpu::Device,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        size: u64,
    ) {
        self.copy_range(device, src, 0, dst, 0, size);
    }

    /// Copies `size` bytes from `src` at `src_offset` to `dst` at `dst_offset` (all multiples
    /// of 4).
    pub fn copy_range(
        &mut self,
        device: &wgpu::Device,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        self.encoder(device)
            .copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size);
    }

    /// Records one dispatch. Returns true when the batch is full and should be submitted.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        &mut self,
        device: &wgpu::Device,
        pipeline: &super::pipeline::CachedPipeline,
        params: &[u32],
        buffers: &[wgpu::BufferBinding],
        groups: [u32; 3],
        profiler: &mut Profiler,
        label: &'static str,
        work: (f64, f64),
    ) -> bool {
        assert!(
            params.len() * 4 <= PARAM_SLOT as usize,
            "parameter block too large"
        );
        let offset = self.used_slots * PARAM_SLOT;
        self.params_cpu
            .extend_from_slice(bytemuck::cast_slice(params));
        self.params_cpu
            .resize(((self.used_slots + 1) * PARAM_SLOT) as usize, 0);
        self.used_slots += 1;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_gpu,
                offset,
                size: std::num::NonZeroU64::new(PARAM_SLOT),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(b.clone()),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        let timestamps = profiler.begin(label, work);
        let enc = self.encoder(device);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: timestamps.as_ref().map(|(qs, i)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(*i),
                        end_of_pass_write_index: Some(*i + 1),
                    }
                }),
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.dispatches += 1;
        self.total_dispatches += 1;
        self.used_slots >= PARAM_SLOTS
            || self.dispatches >= DISPATCHES_PER_SUBMIT
            || profiler.full()
    }
}
