//! Tracing: while a trace is open, the device logs every buffer a computation touches and
//! every command it records (dispatches with their pipeline, parameter bytes, bindings and
//! workgroup counts; copies; clears; writes from the CPU), in order. A plan file
//! (src/plan/) is built from one trace of a scoring pass, so that another runtime replays
//! exactly what the engine ran.
//!
//! Buffers fall into two kinds: those the pool handed out while the trace was open (scratch:
//! their contents start undefined) and those that existed before it (the model's weights:
//! their contents belong in the plan). A computation that writes a buffer of the second kind,
//! or reads one back while tracing, cannot be replayed from a plan; the trace says so.

use super::pipeline::{Access, PipelineConfig};
use std::collections::HashMap;

/// One buffer seen while tracing.
pub struct TracedBuffer {
    pub buffer: wgpu::Buffer,
    pub size: u64,
    /// Handed out by the pool while tracing (contents undefined at the start of the trace).
    pub scratch: bool,
}

/// A range of a buffer bound to one binding: buffer index, byte offset, byte size (None: to
/// the end of the buffer).
pub type TracedBinding = (usize, u64, Option<u64>);

/// One recorded command. Buffers are indices into `Trace::buffers`, pipelines into
/// `Trace::pipelines`.
pub enum TracedCommand {
    Dispatch {
        pipeline: usize,
        /// The parameter block bound at binding 0.
        params: Vec<u32>,
        /// Bindings 1.. in order.
        bindings: Vec<TracedBinding>,
        groups: [u32; 3],
    },
    Copy {
        src: usize,
        src_offset: u64,
        dst: usize,
        dst_offset: u64,
        size: u64,
    },
    Clear {
        buffer: usize,
        size: u64,
    },
    /// Bytes written from the CPU at offset 0.
    Write {
        buffer: usize,
        data: Vec<u8>,
    },
}

/// What a device did while a trace was open.
#[derive(Default)]
pub struct Trace {
    index: HashMap<wgpu::Buffer, usize>,
    pub buffers: Vec<TracedBuffer>,
    pub pipelines: Vec<PipelineConfig>,
    pub commands: Vec<TracedCommand>,
    /// The first thing that makes the trace unreplayable, if any.
    pub problem: Option<String>,
}

impl Trace {
    /// The buffer's index, registering it on first sight (as existing unless the pool just
    /// handed it out).
    fn buffer(&mut self, buffer: &wgpu::Buffer, scratch: bool) -> usize {
        if let Some(&i) = self.index.get(buffer) {
            if scratch && !self.buffers[i].scratch {
                self.fail("a buffer read as constant data was released and reused");
            }
            return i;
        }
        let i = self.buffers.len();
        self.index.insert(buffer.clone(), i);
        self.buffers.push(TracedBuffer {
            buffer: buffer.clone(),
            size: buffer.size(),
            scratch,
        });
        i
    }

    fn fail(&mut self, why: &str) {
        self.problem.get_or_insert_with(|| why.to_string());
    }

    /// A destination must be scratch: writing an existing buffer would make the plan's
    /// recorded contents of it depend on when they were read.
    fn written(&mut self, buffer: usize) {
        if !self.buffers[buffer].scratch {
            self.fail("the computation writes a buffer that existed before the trace");
        }
    }

    pub(crate) fn allocated(&mut self, buffer: &wgpu::Buffer) {
        self.buffer(buffer, true);
    }

    pub(crate) fn dispatch(
        &mut self,
        config: PipelineConfig,
        params: &[u32],
        bindings: &[wgpu::BufferBinding],
        groups: [u32; 3],
    ) {
        let pipeline = match self.pipelines.iter().position(|p| *p == config) {
            Some(i) => i,
            None => {
                self.pipelines.push(config);
                self.pipelines.len() - 1
            }
        };
        let access = self.pipelines[pipeline].bindings;
        let mut traced = Vec::with_capacity(bindings.len());
        for (b, a) in bindings.iter().zip(access) {
            let i = self.buffer(b.buffer, false);
            if *a == Access::ReadWrite {
                self.written(i);
            }
            traced.push((i, b.offset, b.size.map(|s| s.get())));
        }
        self.commands.push(TracedCommand::Dispatch {
            pipeline,
            params: params.to_vec(),
            bindings: traced,
            groups,
        });
    }

    pub(crate) fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        let src = self.buffer(src, false);
        let dst = self.buffer(dst, false);
        self.written(dst);
        self.commands.push(TracedCommand::Copy {
            src,
            src_offset,
            dst,
            dst_offset,
            size,
        });
    }

    pub(crate) fn clear(&mut self, buffer: &wgpu::Buffer, size: u64) {
        let buffer = self.buffer(buffer, false);
        self.written(buffer);
        self.commands.push(TracedCommand::Clear { buffer, size });
    }

    pub(crate) fn write(&mut self, buffer: &wgpu::Buffer, data: &[u8]) {
        let buffer = self.buffer(buffer, false);
        self.written(buffer);
        self.commands.push(TracedCommand::Write {
            buffer,
            data: data.to_vec(),
        });
    }

    pub(crate) fn read_back(&mut self) {
        self.fail("the computation reads a result back before its end");
    }

    /// The index of a buffer the trace has seen.
    pub fn index_of(&self, buffer: &wgpu::Buffer) -> Option<usize> {
        self.index.get(buffer).copied()
    }
}
