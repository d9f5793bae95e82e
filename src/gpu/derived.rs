//! Tensors derived from the contents of another tensor (a convolution's transformed filter),
//! kept from one computation to the next until that tensor is written: a scoring job then
//! transforms each filter once, not once per batch. Every way the engine writes a buffer (a
//! read-write binding of a dispatch, a copy, a clear, a write from the CPU) drops what was
//! derived from it. A source that was dropped, its buffer back in the pool and handed out
//! again, is a new `PooledBuffer`, so an entry that names the old one no longer matches.

use super::buffer::{PooledBuffer, Tensor};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

struct Entry {
    source: Weak<PooledBuffer>,
    derived: Tensor,
}

#[derive(Default)]
pub struct DerivedTensors {
    /// (the source's buffer, what was derived from it: a kernel and its parameters).
    entries: HashMap<(wgpu::Buffer, String), Entry>,
    /// The buffers some entry derives from, so that a write to any other costs one lookup.
    sources: HashSet<wgpu::Buffer>,
    pub hits: u64,
    pub misses: u64,
}

impl DerivedTensors {
    fn get(&mut self, source: &Tensor, tag: &str) -> Option<Tensor> {
        let key = (source.raw().clone(), tag.to_string());
        let found = self.entries.get(&key).and_then(|e| {
            let alive = e.source.upgrade()?;
            Rc::ptr_eq(&alive, &source.buf).then(|| e.derived.clone())
        });
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    fn insert(&mut self, source: &Tensor, tag: String, derived: Tensor) {
        // Entries whose source is gone (a tensor computed afresh each call) hold memory for
        // nothing: dropped here, so that such sources never accumulate.
        self.entries.retain(|_, e| e.source.strong_count() > 0);
        self.sources = self.entries.keys().map(|(b, _)| b.clone()).collect();
        self.sources.insert(source.raw().clone());
        let source_buf = Rc::downgrade(&source.buf);
        let key = (source.raw().clone(), tag);
        self.entries.insert(
            key,
            Entry {
                source: source_buf,
                derived,
            },
        );
    }

    /// `buffer` is about to be written: what was derived from it is stale.
    pub(crate) fn written(&mut self, buffer: &wgpu::Buffer) {
        if self.sources.remove(buffer) {
            self.entries.retain(|(b, _), _| b != buffer);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl super::Gpu {
    /// The tensor `make` computes from `source`, computed once per contents of `source`: kept
    /// (under `tag`, which must name everything else the result depends on) until `source` is
    /// written or dropped. While a trace is open every call computes afresh, so that the
    /// trace holds the work.
    pub fn derived(&self, source: &Tensor, tag: String, make: impl FnOnce() -> Tensor) -> Tensor {
        if self.trace.borrow().is_some() {
            return make();
        }
        if let Some(t) = self.derived.borrow_mut().get(source, &tag) {
            return t;
        }
        let t = make();
        self.derived.borrow_mut().insert(source, tag, t.clone());
        t
    }
}
