//! Named parameters in the engine's layouts, with conversion to and from the file layouts of
//! docs/MODEL.md (conv `[out, in, kh, kw]`, conv1d `[out, in, k]`, dense `[out, in]`), so that
//! checkpoints keep the documented names and layouts and are readable without asna.

use crate::gpu::{DType, Gpu, Tensor};
use crate::rng::Rng;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// File [out, in, kh, kw]; engine [kh, kw, in, out].
    Conv2d,
    /// File [out, in, k]; engine [1, k, in, out].
    Conv1d,
    /// File [out, in]; engine [1, 1, in, out] (a 1x1 convolution of a 1x1 image).
    Dense,
    /// Biases, batch-norm and PReLU vectors: the same in both.
    Vector,
}

#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub kind: Kind,
    pub file_shape: Vec<usize>,
    /// False for running statistics, which training updates but does not differentiate.
    pub trainable: bool,
    /// Initial value for vectors (bias 0, gamma 1, beta 0, running mean 0, running var 1,
    /// PReLU alpha 0).
    pub init: f32,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.file_shape.iter().product()
    }
    pub fn engine_shape(&self) -> Vec<usize> {
        let s = &self.file_shape;
        match self.kind {
            Kind::Conv2d => vec![s[2], s[3], s[1], s[0]],
            Kind::Conv1d => vec![1, s[2], s[1], s[0]],
            Kind::Dense => vec![1, 1, s[1], s[0]],
            Kind::Vector => s.clone(),
        }
    }
    /// (fan_in, fan_out) for Glorot initialisation.
    fn fans(&self) -> (usize, usize) {
        let s = &self.file_shape;
        match self.kind {
            Kind::Conv2d => (s[1] * s[2] * s[3], s[0] * s[2] * s[3]),
            Kind::Conv1d => (s[1] * s[2], s[0] * s[2]),
            Kind::Dense => (s[1], s[0]),
            Kind::Vector => (1, 1),
        }
    }
}

/// File layout -> engine layout.
pub fn to_engine(spec: &ParamSpec, file: &[f32]) -> Vec<f32> {
    let s = &spec.file_shape;
    let (out, inp, kh, kw) = match spec.kind {
        Kind::Conv2d => (s[0], s[1], s[2], s[3]),
        Kind::Conv1d => (s[0], s[1], 1, s[2]),
        Kind::Dense => (s[0], s[1], 1, 1),
        Kind::Vector => return file.to_vec(),
    };
    let mut e = vec![0.0; file.len()];
    for co in 0..out {
        for ci in 0..inp {
            for ky in 0..kh {
                for kx in 0..kw {
                    e[((ky * kw + kx) * inp + ci) * out + co] =
                        file[((co * inp + ci) * kh + ky) * kw + kx];
                }
            }
        }
    }
    e
}

/// Engine layout -> file layout.
pub fn to_file(spec: &ParamSpec, engine: &[f32]) -> Vec<f32> {
    let s = &spec.file_shape;
    let (out, inp, kh, kw) = match spec.kind {
        Kind::Conv2d => (s[0], s[1], s[2], s[3]),
        Kind::Conv1d => (s[0], s[1], 1, s[2]),
        Kind::Dense => (s[0], s[1], 1, 1),
        Kind::Vector => return engine.to_vec(),
    };
    let mut f = vec![0.0; engine.len()];
    for co in 0..out {
        for ci in 0..inp {
            for ky in 0..kh {
                for kx in 0..kw {
                    f[((co * inp + ci) * kh + ky) * kw + kx] =
                        engine[((ky * kw + kx) * inp + ci) * out + co];
                }
            }
        }
    }
    f
}

/// Specs for a model, built in order.
#[derive(Default, Clone, Debug)]
pub struct SpecList(pub Vec<ParamSpec>);

impl SpecList {
    fn push(
        &mut self,
        name: String,
        kind: Kind,
        file_shape: Vec<usize>,
        trainable: bool,
        init: f32,
    ) {
        self.0.push(ParamSpec {
            name,
            kind,
            file_shape,
            trainable,
            init,
        });
    }
    pub fn conv(&mut self, name: &str, cin: usize, cout: usize, k: usize) {
        self.push(
            format!("{name}.weight"),
            Kind::Conv2d,
            vec![cout, cin, k, k],
            true,
            0.0,
        );
        self.push(format!("{name}.bias"), Kind::Vector, vec![cout], true, 0.0);
    }
    pub fn conv1d(&mut self, name: &str, cin: usize, cout: usize, k: usize) {
        self.push(
            format!("{name}.weight"),
            Kind::Conv1d,
            vec![cout, cin, k],
            true,
            0.0,
        );
        self.push(format!("{name}.bias"), Kind::Vector, vec![cout], true, 0.0);
    }
    pub fn dense(&mut self, name: &str, fin: usize, fout: usize) {
        self.push(
            format!("{name}.weight"),
            Kind::Dense,
            vec![fout, fin],
            true,
            0.0,
        );
        self.push(format!("{name}.bias"), Kind::Vector, vec![fout], true, 0.0);
    }
    pub fn bn(&mut self, name: &str, c: usize) {
        self.push(format!("{name}.gamma"), Kind::Vector, vec![c], true, 1.0);
        self.push(format!("{name}.beta"), Kind::Vector, vec![c], true, 0.0);
        self.push(
            format!("{name}.running_mean"),
            Kind::Vector,
            vec![c],
            false,
            0.0,
        );
        self.push(
            format!("{name}.running_var"),
            Kind::Vector,
            vec![c],
            false,
            1.0,
        );
    }
    pub fn vector(&mut self, name: &str, c: usize, init: f32) {
        self.push(name.to_string(), Kind::Vector, vec![c], true, init);
    }
}

/// A model's parameters and running statistics on the GPU, in engine layout. Cloning shares
/// the tensors' buffers.
#[derive(Clone)]
pub struct ParamStore {
    pub specs: Vec<ParamSpec>,
    pub values: BTreeMap<String, Tensor>,
}

impl ParamStore {
    /// Glorot-uniform weights and the specs' constants elsewhere, from a seed.
    pub fn init(gpu: &Gpu, specs: &SpecList, seed: u64) -> ParamStore {
        let mut rng = Rng::new(seed);
        let mut values = BTreeMap::new();
        for spec in &specs.0 {
            let data: Vec<f32> = if spec.kind == Kind::Vector {
                vec![spec.init; spec.numel()]
            } else {
                let (fi, fo) = spec.fans();
                let lim = (6.0 / (fi + fo) as f64).sqrt();
                (0..spec.numel())
                    .map(|_| rng.range(-lim, lim) as f32)
                    .collect()
            };
            values.insert(
                spec.name.clone(),
                gpu.upload(&spec.engine_shape(), &to_engine(spec, &data)),
            );
        }
        ParamStore {
            specs: specs.0.clone(),
            values,
        }
    }

    /// From file-layout tensors found by `lookup(name)`; every spec must be present with its
    /// exact shape.
    pub fn from_file_tensors(
        gpu: &Gpu,
        specs: &SpecList,
        mut lookup: impl FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>,
        source: &str,
    ) -> Result<ParamStore> {
        let mut values = BTreeMap::new();
        for spec in &specs.0 {
            let (shape, data) = lookup(&spec.name)
                .ok_or_else(|| anyhow!("{source}: missing tensor \"{}\"", spec.name))?;
            if shape != spec.file_shape {
                bail!(
                    "{source}: tensor \"{}\" has shape {:?}, expected {:?}",
                    spec.name,
                    shape,
                    spec.file_shape
                );
            }
            if data.iter().any(|v| !v.is_finite()) {
                bail!(
                    "{source}: tensor \"{}\" holds NaN or infinite values",
                    spec.name
                );
            }
            values.insert(
                spec.name.clone(),
                gpu.upload(&spec.engine_shape(), &to_engine(spec, &data)),
            );
        }
        Ok(ParamStore {
            specs: specs.0.clone(),
            values,
        })
    }

    pub fn get(&self, name: &str) -> &Tensor {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    pub fn set(&mut self, name: &str, t: Tensor) {
        let old = self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        assert_eq!(old.numel(), t.numel(), "{name}: size changes");
        let shape = old.shape.clone();
        self.values.insert(name.to_string(), t.reshape(&shape));
    }

    /// A copy for scoring with weights stored as `dtype` (converted once, through the CPU).
    /// Vectors (biases, batch-norm parameters and statistics) stay f32: the kernels read them
    /// as f32 whatever the activations' type.
    pub fn to_dtype(&self, gpu: &Gpu, dtype: DType) -> Result<ParamStore> {
        let mut values = BTreeMap::new();
        for spec in &self.specs {
            let t = self.get(&spec.name);
            let t = if spec.kind == Kind::Vector {
                t.clone()
            } else {
                gpu.convert(t, dtype)?
            };
            values.insert(spec.name.clone(), t);
        }
        Ok(ParamStore {
            specs: self.specs.clone(),
            values,
        })
    }

    /// The element type of the weights, which the scoring pass gives its activations.
    pub fn weight_dtype(&self) -> DType {
        self.specs
            .iter()
            .find(|s| s.kind != Kind::Vector)
            .map_or(DType::F32, |s| self.get(&s.name).dtype)
    }

    pub fn spec(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Every tensor in file layout, in spec order.
    pub fn to_file_tensors(&self, gpu: &Gpu) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
        self.specs
            .iter()
            .map(|s| {
                Ok((
                    s.name.clone(),
                    s.file_shape.clone(),
                    to_file(s, &gpu.download(self.get(&s.name))?),
                ))
            })
            .collect()
    }

    pub fn trainable_names(&self) -> Vec<String> {
        self.specs
            .iter()
            .filter(|s| s.trainable)
            .map(|s| s.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        for (kind, shape) in [
            (Kind::Conv2d, vec![4, 3, 5, 2]),
            (Kind::Conv1d, vec![6, 2, 7]),
            (Kind::Dense, vec![3, 5]),
            (Kind::Vector, vec![7]),
        ] {
            let spec = ParamSpec {
                name: "x".into(),
                kind,
                file_shape: shape.clone(),
                trainable: true,
                init: 0.0,
            };
            let data: Vec<f32> = (0..spec.numel()).map(|i| i as f32).collect();
            let e = to_engine(&spec, &data);
            assert_eq!(to_file(&spec, &e), data);
            if kind == Kind::Conv2d {
                // file [co=1, ci=2, ky=3, kx=1] -> engine [ky, kx, ci, co]
                let (co, ci, ky, kx) = (1, 2, 3, 1);
                let fi = ((co * 3 + ci) * 5 + ky) * 2 + kx;
                assert_eq!(e[((ky * 2 + kx) * 3 + ci) * 4 + co], data[fi]);
            }
        }
    }
}
