//! Adam over a parameter store: first and second moments per parameter, step count, and the
//! update launched on the GPU.

use crate::gpu::{Gpu, Tensor};
use crate::model::checkpoint::{FileTensors, ResumeState};
use crate::model::params::{to_engine, to_file, ParamStore};
use crate::model::weights::TensorFile;
use crate::ops::adam::{self, AdamConfig};
use anyhow::{anyhow, bail, Result};
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

/// Adam's moments go into a checkpoint as `adam.m.NAME` / `adam.v.NAME` in the parameters'
/// file layouts, its step count and settings as metadata.
impl ResumeState for Adam {
    fn metadata(&self) -> Result<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        m.insert("adam_t".into(), self.t.to_string());
        m.insert("adam".into(), serde_json::to_string(&self.cfg)?);
        Ok(m)
    }

    fn file_tensors(&self, gpu: &Gpu, store: &ParamStore) -> Result<FileTensors> {
        let mut tensors = Vec::new();
        for spec in store.specs.iter().filter(|s| s.trainable) {
            if let (Some(m), Some(v)) = (self.m.get(&spec.name), self.v.get(&spec.name)) {
                for (which, t) in [("m", m), ("v", v)] {
                    tensors.push((
                        format!("adam.{which}.{}", spec.name),
                        spec.file_shape.clone(),
                        to_file(spec, &gpu.download(t)?),
                    ));
                }
            }
        }
        Ok(tensors)
    }
}

impl Adam {
    /// Adam's state from a checkpoint saved with it (None when it holds none).
    pub fn load(
        gpu: &Gpu,
        file: &TensorFile,
        store: &ParamStore,
        source: &str,
    ) -> Result<Option<Adam>> {
        let Some(t) = file.metadata.get("adam_t") else {
            return Ok(None);
        };
        let t: u64 = t.parse().map_err(|_| anyhow!("{source}: bad adam_t"))?;
        let cfg = serde_json::from_str(
            file.metadata
                .get("adam")
                .ok_or_else(|| anyhow!("{source}: lacks adam settings"))?,
        )
        .map_err(|e| anyhow!("{source}: bad adam settings ({e})"))?;
        let mut adam = Adam::new(cfg);
        adam.t = t;
        for spec in store.specs.iter().filter(|s| s.trainable) {
            for (which, map) in [("m", &mut adam.m), ("v", &mut adam.v)] {
                let key = format!("adam.{which}.{}", spec.name);
                let (shape, data) = file
                    .float(&key)
                    .ok_or_else(|| anyhow!("{source}: missing tensor \"{key}\""))?;
                if shape != spec.file_shape {
                    bail!(
                        "{source}: tensor \"{key}\" has shape {shape:?}, expected {:?}",
                        spec.file_shape
                    );
                }
                map.insert(
                    spec.name.clone(),
                    gpu.upload(&spec.engine_shape(), &to_engine(spec, &data)),
                );
            }
        }
        Ok(Some(adam))
    }
}
