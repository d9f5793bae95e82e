//! GPU buffers: a pool that reuses allocations by size, and the `Tensor` that owns one.
//!
//! Layout: activations are channels-last, `[N, H, W, C]` with C fastest. The convolutions are
//! implicit GEMMs whose reduction runs over (ky, kx, ci): with C innermost each filter tap is
//! one contiguous run of channels, the (h, w, c) flatten before the dense head is a no-op, and
//! channel concatenation is a strided copy. Weights are stored `[kh, kw, in, out]` (a plain
//! row-major K x N matrix for the GEMM); dense weights `[in, out]`.

use super::context::Gpu;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

// Uniform too, so that a kernel can read a slice of any tensor as a uniform window.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Free buffers by byte size. Training repeats the same shapes every step, so after the first
/// step every request is served from here and GPU memory stops growing.
#[derive(Default)]
pub struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pub allocated_bytes: u64,
    pub allocations: u64,
    pub live_bytes: u64,
    pub peak_live_bytes: u64,
}

impl BufferPool {
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, v)| s * v.len() as u64).sum()
    }
    /// Releases every pooled (unused) buffer back to the driver.
    pub fn trim(&mut self) {
        let freed = self.free_bytes();
        self.free.clear();
        self.allocated_bytes -= freed;
    }
}

/// A pooled storage buffer; dropping it returns the allocation to the pool.
pub struct PooledBuffer {
    pub buffer: Option<wgpu::Buffer>,
    pub size: u64,
    pool: Weak<RefCell<BufferPool>>,
}

impl PooledBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            if let Ok(mut p) = pool.try_borrow_mut() {
                p.live_bytes -= self.size;
                p.free.entry(self.size).or_default().push(buf);
            }
        }
    }
}

/// Rounds a byte size to the pool's granularity (16 bytes, at least 16).
pub fn padded_size(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

impl Gpu {
    /// The batch items `rows` of `x` (in that order, repeats allowed) as a new tensor
    /// [rows.len(), ...], by buffer copies: one per run of consecutive source items.
    pub fn gather_batch(&self, x: &Tensor, rows: &[usize]) -> Tensor {
        let mut shape = x.shape.clone();
        let item = x.bytes() / shape[0] as u64;
        assert!(
            item % 4 == 0,
            "gather_batch: items of {item} bytes (copies move multiples of 4)"
        );
        assert!(
            rows.iter().all(|&r| r < shape[0]),
            "gather_batch: row out of range"
        );
        shape[0] = rows.len();
        let out = self.empty_as(&shape, x.dtype);
        let mut i = 0;
        while i < rows.len() {
            let mut run = 1;
            while i + run < rows.len() && rows[i + run] == rows[i] + run {
                run += 1;
            }
            let (src_offset, dst_offset, size) =
                (rows[i] as u64 * item, i as u64 * item, run as u64 * item);
            self.traced(|t| t.copy(x.raw(), src_offset, out.raw(), dst_offset, size));
            self.derived.borrow_mut().written(out.raw());
            self.recorder.borrow_mut().copy_range(
                &self.device,
                x.raw(),
                src_offset,
                out.raw(),
                dst_offset,
                size,
            );
            i += run;
        }
        out
    }

    /// A buffer of at least `bytes` bytes, from the pool when one of that size is free. Its
    /// contents are undefined.
    pub fn alloc(&self, bytes: u64) -> Rc<PooledBuffer> {
        let size = padded_size(bytes);
        let mut pool = self.pool.borrow_mut();
        let buf = match pool.free.get_mut(&size).and_then(Vec::pop) {
            Some(b) => b,
            None => {
                pool.allocated_bytes += size;
                pool.allocations += 1;
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: STORAGE_USAGE,
                    mapped_at_creation: false,
                })
            }
        };
        pool.live_bytes += size;
        pool.peak_live_bytes = pool.peak_live_bytes.max(pool.live_bytes);
        self.traced(|t| t.allocated(&buf));
        Rc::new(PooledBuffer {
            buffer: Some(buf),
            size,
            pool: Rc::downgrade(&self.pool),
        })
    }

    /// Bytes the pool holds from the driver (in use and free).
    pub fn pool_allocated_bytes(&self) -> u64 {
        self.pool.borrow().allocated_bytes
    }
    pub fn pool_allocations(&self) -> u64 {
        self.pool.borrow().allocations
    }
    pub fn pool_peak_live_bytes(&self) -> u64 {
        self.pool.borrow().peak_live_bytes
    }
    pub fn reset_peak(&self) {
        let mut p = self.pool.borrow_mut();
        p.peak_live_bytes = p.live_bytes;
    }
    pub fn trim_pool(&self) {
        self.pool.borrow_mut().trim();
    }
}

/// Element type of a tensor's storage: f32 everywhere, or f16 for the scoring forward pass on
/// adapters with SHADER_F16 (half the memory traffic; convolutions multiply in f16, other
/// kernels compute in f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// A tensor on the GPU: a shape and a pooled buffer. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub buf: Rc<PooledBuffer>,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * self.dtype.size()
    }
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }
    /// Channels (the last axis).
    pub fn channels(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }
    /// The same storage seen with another shape of the same size.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.numel(),
            "reshape {:?} -> {:?}",
            self.shape,
            shape
        );
        Tensor {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        }
    }
    /// `[N, H, W, C]` of a 4-D tensor.
    pub fn nhwc(&self) -> (usize, usize, usize, usize) {
        assert_eq!(
            self.shape.len(),
            4,
            "expected an NHWC tensor, got {:?}",
            self.shape
        );
        (self.shape[0], self.shape[1], self.shape[2], self.shape[3])
    }
}

impl Gpu {
    /// An uninitialised f32 tensor.
    pub fn empty(&self, shape: &[usize]) -> Tensor {
        self.empty_as(shape, DType::F32)
    }

    /// An uninitialised tensor of `dtype` (the pool pads every buffer to 16 bytes, so an odd
    /// number of f16 values still fills whole 4-byte words).
    pub fn empty_as(&self, shape: &[usize], dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor {
            buf: self.alloc(n as u64 * dtype.size()),
            shape: shape.to_vec(),
            dtype,
        }
    }

    pub fn zeros(&self, shape: &[usize]) -> Tensor {
        self.zeros_as(shape, DType::F32)
    }

    pub fn zeros_as(&self, shape: &[usize], dtype: DType) -> Tensor {
        let t = self.empty_as(shape, dtype);
        self.traced(|trace| trace.clear(t.raw(), t.buf.size));
        self.derived.borrow_mut().written(t.raw());
        self.recorder
            .borrow_mut()
            .clear(&self.device, t.raw(), t.buf.size);
        t
    }

    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Tensor {
        self.upload_as(shape, data, DType::F32)
    }

    /// Uploads f32 values stored as `dtype` (rounded to nearest for f16).
    pub fn upload_as(&self, shape: &[usize], data: &[f32], dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            data.len(),
            "upload: shape {shape:?} needs {n} values, got {}",
            data.len()
        );
        let t = self.empty_as(shape, dtype);
        if !data.is_empty() {
            match dtype {
                DType::F32 => self.queue_write(t.raw(), bytemuck::cast_slice(data)),
                DType::F16 => {
                    let mut half: Vec<half::f16> =
                        data.iter().map(|&v| half::f16::from_f32(v)).collect();
                    // write_buffer needs a multiple of 4 bytes.
                    half.resize(n.next_multiple_of(2), half::f16::ZERO);
                    self.queue_write(t.raw(), bytemuck::cast_slice(&half));
                }
            }
        }
        t
    }

    /// The same values stored as `dtype` (through the CPU; meant for one-off conversions such
    /// as a model's weights, not for per-batch work).
    pub fn convert(&self, t: &Tensor, dtype: DType) -> anyhow::Result<Tensor> {
        if t.dtype == dtype {
            return Ok(t.clone());
        }
        Ok(self.upload_as(&t.shape, &self.download(t)?, dtype))
    }

    pub fn full(&self, shape: &[usize], value: f32) -> Tensor {
        let n: usize = shape.iter().product();
        self.upload(shape, &vec![value; n])
    }

    /// Raw bytes (e.g. packed u8 pixels) in a storage buffer, padded to 4 bytes.
    pub fn upload_bytes(&self, data: &[u8]) -> Rc<PooledBuffer> {
        let buf = self.alloc(data.len() as u64);
        let mut padded = data.to_vec();
        padded.resize(data.len().div_ceil(4) * 4, 0);
        if !padded.is_empty() {
            self.queue_write(buf.raw(), &padded);
        }
        buf
    }

    /// A write ordered with the recorded work: pending dispatches are submitted first, so a
    /// write never overtakes work recorded before it.
    fn queue_write(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        self.traced(|t| t.write(buf, bytes));
        self.derived.borrow_mut().written(buf);
        self.flush();
        self.queue.write_buffer(buf, 0, bytes);
    }

    /// Copies a tensor back to the CPU as f32 values, whatever its storage type; the only
    /// operation that waits for the GPU.
    pub fn download(&self, t: &Tensor) -> anyhow::Result<Vec<f32>> {
        self.read_buffer_with(t.raw(), t.bytes(), |raw| match t.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec(raw),
            DType::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// The first `bytes` bytes of a buffer, after all recorded work.
    pub fn read_buffer(&self, buffer: &wgpu::Buffer, bytes: u64) -> anyhow::Result<Vec<u8>> {
        self.read_buffer_with(buffer, bytes, <[u8]>::to_vec)
    }

    /// `read` applied to the first `bytes` bytes of a buffer while they are mapped (no copy
    /// in between), after all recorded work.
    fn read_buffer_with<T: Default>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
        read: impl FnOnce(&[u8]) -> T,
    ) -> anyhow::Result<T> {
        if bytes == 0 {
            return Ok(T::default());
        }
        self.traced(|t| t.read_back());
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded_size(bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.recorder.borrow_mut().copy(
            &self.device,
            buffer,
            &staging,
            padded_size(bytes).min(buffer.size()),
        );
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.sync()?;
        rx.recv()
            .map_err(|_| anyhow::anyhow!("GPU read-back was cancelled"))?
            .map_err(|e| anyhow::anyhow!("GPU read-back failed: {e}"))?;
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| anyhow::anyhow!("GPU read-back failed: {e}"))?;
        let out = read(&view[..bytes as usize]);
        drop(view);
        staging.unmap();
        Ok(out)
    }

    pub fn download_scalar(&self, t: &Tensor) -> anyhow::Result<f32> {
        Ok(self.download(t)?[0])
    }
}
