//! Replays a plan through wgpu without the engine: its own buffers, pipelines and command
//! encoding, exactly as the plan's format describes (src/plan/mod.rs), as the browser module
//! does with WebGPU. It checks that a plan holds everything a scoring pass needs.

use super::{Bind, Binding, Command, Plan};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

pub struct Replay {
    plan: Plan,
    weights: Vec<u8>,
    buffers: Vec<wgpu::Buffer>,
    pipelines: Vec<wgpu::ComputePipeline>,
    /// One bind group per dispatch, in command order.
    bind_groups: Vec<wgpu::BindGroup>,
}

impl Replay {
    /// Creates the plan's buffers (with their initial contents), pipelines and bind groups
    /// on `device`. `shader` returns the WGSL text of a shader file by name.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        plan: &Plan,
        weights: &[u8],
        shader: impl Fn(&str) -> Result<String>,
    ) -> Result<Replay> {
        plan.check()?;
        if weights.len() as u64 != plan.weights_bytes {
            bail!(
                "weights: {} bytes, but the plan expects {}",
                weights.len(),
                plan.weights_bytes
            );
        }
        let limits = device.limits();
        let mut buffers = Vec::with_capacity(plan.buffers.len());
        for (i, b) in plan.buffers.iter().enumerate() {
            if b.size > limits.max_buffer_size {
                bail!(
                    "buffer {i} needs {} bytes; this device allows {}",
                    b.size,
                    limits.max_buffer_size
                );
            }
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: b.size,
                usage: USAGE,
                mapped_at_creation: false,
            });
            if let Some([offset, len]) = b.init {
                queue.write_buffer(
                    &buffer,
                    0,
                    &weights[offset as usize..(offset + len) as usize],
                );
            }
            buffers.push(buffer);
        }
        let mut modules = Vec::with_capacity(plan.shaders.len());
        for name in &plan.shaders {
            let text = shader(name)?;
            modules.push(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(text.into()),
            }));
        }
        let mut layouts = Vec::with_capacity(plan.pipelines.len());
        let mut pipelines = Vec::with_capacity(plan.pipelines.len());
        for p in &plan.pipelines {
            let mut entries = vec![layout_entry(0, uniform(None))];
            for (i, b) in p.bindings.iter().enumerate() {
                let ty = match b {
                    Binding::Read => storage(true),
                    Binding::ReadWrite => storage(false),
                    Binding::UniformWindow => uniform(wgpu::BufferSize::new(65536)),
                };
                entries.push(layout_entry(i as u32 + 1, ty));
            }
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            let constants: Vec<(&str, f64)> =
                p.constants.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            pipelines.push(
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&p.entry),
                    layout: Some(&layout),
                    module: &modules[p.shader],
                    entry_point: Some(&p.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                }),
            );
            layouts.push(bgl);
        }
        // Every dispatch's parameter block in one uniform buffer, a slot each.
        let slot = plan.param_slot as u64;
        let dispatches: Vec<(usize, &Vec<u32>, &Vec<Bind>)> = plan
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Dispatch {
                    pipeline,
                    params,
                    bind,
                    ..
                } => Some((*pipeline, params, bind)),
                _ => None,
            })
            .collect();
        let mut param_bytes = vec![0u8; (dispatches.len().max(1) as u64 * slot) as usize];
        for (i, (_, params, _)) in dispatches.iter().enumerate() {
            let at = i * slot as usize;
            param_bytes[at..at + params.len() * 4].copy_from_slice(bytemuck::cast_slice(params));
        }
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("plan parameters"),
            size: param_bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&params, 0, &param_bytes);
        let bind_groups = dispatches
            .iter()
            .enumerate()
            .map(|(i, (pipeline, _, bind))| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset: i as u64 * slot,
                        size: wgpu::BufferSize::new(slot),
                    }),
                }];
                for (k, &(b, offset, size)) in bind.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: k as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &buffers[b],
                            offset,
                            size: size.and_then(wgpu::BufferSize::new),
                        }),
                    });
                }
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &layouts[*pipeline],
                    entries: &entries,
                })
            })
            .collect();
        Ok(Replay {
            plan: plan.clone(),
            weights: weights.to_vec(),
            buffers,
            pipelines,
            bind_groups,
        })
    }

    /// Runs one pass with `inputs` (name, bytes) and returns every output's bytes by name.
    pub fn run(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        inputs: &[(&str, &[u8])],
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        for port in &self.plan.inputs {
            match inputs.iter().find(|(n, _)| *n == port.name) {
                Some((_, b)) if b.len() as u64 == port.bytes => {}
                Some((_, b)) => bail!(
                    "input \"{}\": {} bytes, the plan takes {}",
                    port.name,
                    b.len(),
                    port.bytes
                ),
                None => bail!("input \"{}\" missing", port.name),
            }
        }
        let new_encoder =
            || device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut encoder = new_encoder();
        let mut dispatch = 0;
        for c in &self.plan.commands {
            match c {
                Command::Dispatch {
                    pipeline, groups, ..
                } => {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&self.pipelines[*pipeline]);
                    pass.set_bind_group(0, &self.bind_groups[dispatch], &[]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                    dispatch += 1;
                }
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => encoder.copy_buffer_to_buffer(
                    &self.buffers[*src],
                    *src_offset,
                    &self.buffers[*dst],
                    *dst_offset,
                    *size,
                ),
                Command::Clear { buffer, size } => {
                    encoder.clear_buffer(&self.buffers[*buffer], 0, Some(*size))
                }
                Command::Write {
                    buffer,
                    data,
                    input,
                } => {
                    // A queue write lands before work submitted after it: submit what is
                    // recorded so far first.
                    queue.submit([std::mem::replace(&mut encoder, new_encoder()).finish()]);
                    let bytes: &[u8] = match (data, input) {
                        (Some([offset, len]), _) => {
                            &self.weights[*offset as usize..(*offset + *len) as usize]
                        }
                        (None, Some(name)) => {
                            inputs.iter().find(|(n, _)| n == name).expect("checked").1
                        }
                        (None, None) => unreachable!("checked by Plan::check"),
                    };
                    queue.write_buffer(&self.buffers[*buffer], 0, bytes);
                }
            }
        }
        let mut staging = Vec::with_capacity(self.plan.outputs.len());
        for port in &self.plan.outputs {
            let size = port.bytes.next_multiple_of(4);
            let s = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("plan output"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            encoder.copy_buffer_to_buffer(&self.buffers[port.buffer], 0, &s, 0, size);
            staging.push(s);
        }
        queue.submit([encoder.finish()]);
        let mut out = BTreeMap::new();
        for (port, s) in self.plan.outputs.iter().zip(&staging) {
            let (tx, rx) = std::sync::mpsc::channel();
            s.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| anyhow!("GPU: {e}"))?;
            rx.recv()
                .map_err(|_| anyhow!("read-back cancelled"))?
                .map_err(|e| anyhow!("read-back failed: {e}"))?;
            let bytes = s.slice(..).get_mapped_range().map_err(|e| anyhow!("{e}"))?
                [..port.bytes as usize]
                .to_vec();
            s.unmap();
            out.insert(port.name.clone(), bytes);
        }
        Ok(out)
    }
}

fn uniform(min: Option<wgpu::BufferSize>) -> wgpu::BindingType {
    wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Uniform,
        has_dynamic_offset: false,
        min_binding_size: min,
    }
}

fn storage(read_only: bool) -> wgpu::BindingType {
    wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Storage { read_only },
        has_dynamic_offset: false,
        min_binding_size: None,
    }
}

fn layout_entry(binding: u32, ty: wgpu::BindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    }
}
