//! Adam over a parameter store: first and second moments per parameter, step count, and the
//! update launched on the GPU.

use crate::gpu::{Gpu, Tensor};
use crate::model::params::ParamStore;
use crate::ops::adam::{self, AdamConfig};
use std::collections::BTreeMap;

pub struct Adam {
    pub cfg: AdamConfig,
    pub t: u64,
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl Adam {
    pub fn new(cfg: AdamConfig) -> Adam {
        Adam {
            cfg,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One step at learning rate `lr` on every parameter that has a gradient.
    pub fn step(
        &mut self,
        gpu: &Gpu,
        store: &ParamStore,
        grads: &BTreeMap<String, Tensor>,
        lr: f32,
    ) {
        self.t += 1;
        for (name, g) in grads {
            let p = store.get(name);
            let m = self
                .m
                .entry(name.clone())
                .or_insert_with(|| gpu.zeros(&p.shape))
                .clone();
            let v = self
                .v
                .entry(name.clone())
                .or_insert_with(|| gpu.zeros(&p.shape))
                .clone();
            adam::step(gpu, &self.cfg, lr, self.t, p, &m, &v, g);
        }
    }
}
