//! `asna import-keras`: the authors' Keras 2 ASNA attention models (whole-model HDF5 files,
//! as `ModelCheckpoint` saves them) as asna checkpoints.
//!
//! The layers are found in the graph that `model_config` records (`keras_match`), checked
//! against the model description (`docs/MODEL.md`), so that a file of another architecture is
//! refused with the first difference found; here their weights are read and converted to the
//! description's names and layouts. What the authors did differently from asna is carried in
//! the weights and metadata: their images were BGR (the first convolution's input
//! channels are turned around), concatenations in another order than the spec's are absorbed
//! by the next convolution's input channels, a batch-norm epsilon other than the spec's is
//! folded into the running variance, and the label scale is PIPAL's.

use super::hdf5::Hdf5File;
use super::keras_graph::Graph;
use super::keras_match::{match_asna, What, SPEC_BN_EPS};
use crate::data::{Direction, LabelScaler};
use crate::files::{same_file, write_atomic};
use crate::model::asna::specs;
use crate::model::checkpoint::model_metadata;
use crate::model::params::{ParamSpec, SpecList};
use crate::model::weights::serialize;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The authors' map from a prediction to PIPAL's MOS scale: `pred * 121.35 + 1449.05`.
pub const PIPAL_MEAN: f64 = 1449.05;
pub const PIPAL_STD: f64 = 121.35;

/// An imported model: tensors in the spec's order, names and file layouts, with metadata.
pub struct ImportedModel {
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
    /// Keras layers whose weights were imported.
    pub layers: usize,
    /// Adjustments made on the way (one line each), for the user.
    pub notes: Vec<String>,
}

impl ImportedModel {
    pub fn tensor(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, d)| (s.clone(), d.clone()))
    }
}

#[derive(clap::Args)]
pub struct ImportKerasArgs {
    /// Whole-model HDF5 file saved by Keras 2
    #[arg(value_name = "MODEL.hdf5")]
    pub model: PathBuf,
    /// Output model file (written atomically)
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
}

/// `asna import-keras`.
pub fn run_command(args: &ImportKerasArgs) -> Result<()> {
    let imported = run(&args.model, &args.out)?;
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "{} layers of {} imported into {}; scores on the PIPAL MOS scale (pred * {PIPAL_STD} + {PIPAL_MEAN})",
        imported.layers,
        args.model.display(),
        args.out.display(),
    );
    Ok(())
}

/// Imports `input` and writes the checkpoint to `out` atomically (nothing is written when the
/// import fails).
pub fn run(input: &Path, out: &Path) -> Result<ImportedModel> {
    if same_file(input, out) {
        bail!(
            "{}: is the same file as the input model {}; choose another --out",
            out.display(),
            input.display()
        );
    }
    let model = import(input)?;
    let bytes = serialize(&model.tensors, &model.metadata)?;
    write_atomic(out, &bytes)?;
    Ok(model)
}

fn spec_of<'a>(specs: &'a SpecList, name: &str) -> &'a ParamSpec {
    specs
        .0
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("the model description has no parameter {name}"))
}

/// Reads a Keras 2 whole-model HDF5 file of the ASNA attention model.
pub fn import(path: &Path) -> Result<ImportedModel> {
    let file = Hdf5File::open(path)?;
    let src = file.source().to_string();
    let config = file.string_attr("", "model_config")?.ok_or_else(|| {
        anyhow!("{src}: no \"model_config\" attribute: not a whole Keras model file (weights alone cannot be mapped; save the model with model.save)")
    })?;
    let graph = Graph::from_model_config(&config)
        .map_err(|e| anyhow!("{src}: not the ASNA attention model: {e}"))?;
    let (plan, encoder) =
        match_asna(&graph).map_err(|e| anyhow!("{src}: not the ASNA attention model: {e}"))?;

    let root = if file.has_group("model_weights") {
        "model_weights"
    } else {
        ""
    };
    let spec_list = specs();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut notes = Vec::new();
    for p in &plan {
        let group = match (&encoder, p.in_encoder) {
            (Some(enc), true) => join(root, enc),
            _ => join(root, &p.layer),
        };
        let weights = LayerWeights::find(&file, &group, &p.layer, !p.in_encoder)?;
        let ctx = format!("{src}: layer \"{}\" ({})", p.layer, p.spec);
        match &p.what {
            What::Conv {
                use_bias,
                input_order,
            } => {
                let spec = spec_of(&spec_list, &format!("{}.weight", p.spec));
                let (co, ci, kh, kw) = (
                    spec.file_shape[0],
                    spec.file_shape[1],
                    spec.file_shape[2],
                    spec.file_shape[3],
                );
                let kernel = weights.take("kernel", &[kh, kw, ci, co], &ctx)?;
                let order: Vec<usize> = if input_order.is_empty() {
                    (0..ci).collect()
                } else {
                    input_order.clone()
                };
                let mut w = vec![0.0f32; kernel.len()];
                for ky in 0..kh {
                    for kx in 0..kw {
                        for (c, &spec_c) in order.iter().enumerate() {
                            for o in 0..co {
                                w[((o * ci + spec_c) * kh + ky) * kw + kx] =
                                    kernel[((ky * kw + kx) * ci + c) * co + o];
                            }
                        }
                    }
                }
                let bias = weights.bias(*use_bias, co, &ctx)?;
                tensors.insert(format!("{}.weight", p.spec), (spec.file_shape.clone(), w));
                tensors.insert(format!("{}.bias", p.spec), (vec![co], bias));
            }
            What::Dense { use_bias } => {
                let spec = spec_of(&spec_list, &format!("{}.weight", p.spec));
                let (out, inp) = (spec.file_shape[0], spec.file_shape[1]);
                let kernel = weights.take("kernel", &[inp, out], &ctx)?;
                let mut w = vec![0.0f32; kernel.len()];
                for i in 0..inp {
                    for o in 0..out {
                        w[o * inp + i] = kernel[i * out + o];
                    }
                }
                let bias = weights.bias(*use_bias, out, &ctx)?;
                tensors.insert(format!("{}.weight", p.spec), (spec.file_shape.clone(), w));
                tensors.insert(format!("{}.bias", p.spec), (vec![out], bias));
            }
            What::BatchNorm { eps, center, scale } => {
                let c = spec_of(&spec_list, &format!("{}.gamma", p.spec)).file_shape[0];
                let gamma = if *scale {
                    weights.take("gamma", &[c], &ctx)?
                } else {
                    vec![1.0; c]
                };
                let beta = if *center {
                    weights.take("beta", &[c], &ctx)?
                } else {
                    vec![0.0; c]
                };
                let mean = weights.take("moving_mean", &[c], &ctx)?;
                let mut var = weights.take("moving_variance", &[c], &ctx)?;
                if (eps - SPEC_BN_EPS).abs() > 1e-12 {
                    // Evaluation divides by sqrt(var + eps): moving the difference of the
                    // epsilons into the variance gives the same numbers with the spec's eps.
                    for v in &mut var {
                        let adjusted = *v as f64 + eps - SPEC_BN_EPS;
                        if adjusted <= 0.0 || !(adjusted as f32).is_finite() {
                            bail!("{ctx}: batch-norm epsilon {eps} with a moving variance of {v} cannot be expressed with the spec's epsilon {SPEC_BN_EPS}");
                        }
                        *v = adjusted as f32;
                    }
                    notes.push(format!(
                        "{}: batch-norm epsilon {eps} folded into the running variance (the spec's is {SPEC_BN_EPS})",
                        p.layer
                    ));
                }
                tensors.insert(format!("{}.gamma", p.spec), (vec![c], gamma));
                tensors.insert(format!("{}.beta", p.spec), (vec![c], beta));
                tensors.insert(format!("{}.running_mean", p.spec), (vec![c], mean));
                tensors.insert(format!("{}.running_var", p.spec), (vec![c], var));
            }
        }
    }

    let mut ordered = Vec::with_capacity(spec_list.0.len());
    for spec in &spec_list.0 {
        let (shape, data) = tensors.remove(&spec.name).ok_or_else(|| {
            anyhow!(
                "{src}: not the ASNA attention model: no layer found for \"{}\"",
                spec.name
            )
        })?;
        debug_assert_eq!(shape, spec.file_shape);
        // `score` refuses a model with NaN or infinite values: none is written.
        if data.iter().any(|v| !v.is_finite()) {
            bail!(
                "{src}: the imported \"{}\" would hold NaN or infinite values",
                spec.name
            );
        }
        ordered.push((spec.name.clone(), shape, data));
    }

    let scaler = LabelScaler {
        mean: PIPAL_MEAN,
        std: PIPAL_STD,
        direction: Direction::HigherIsBetter,
    };
    let mut metadata = model_metadata(&scaler);
    let keras_version = file
        .string_attr("", "keras_version")
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    metadata.insert(
        "imported_from".into(),
        format!("Keras {keras_version} model {file_name}: input channels of the first convolution turned from BGR to RGB, reference first, PIPAL label scale"),
    );
    Ok(ImportedModel {
        tensors: ordered,
        metadata,
        layers: plan.len(),
        notes,
    })
}

fn join(root: &str, name: &str) -> String {
    if root.is_empty() {
        name.to_string()
    } else {
        format!("{root}/{name}")
    }
}

/// The weights of one Keras layer, by variable name (`kernel`, `bias`, `gamma`, ...): the
/// datasets' paths, read only once their shapes are checked.
struct LayerWeights<'f> {
    file: &'f Hdf5File,
    paths: HashMap<String, String>,
    group: String,
}

impl<'f> LayerWeights<'f> {
    /// Finds the datasets that the group's `weight_names` list for `layer`. A nested model's
    /// group lists all its layers' weights as `layer/variable:0`; a top-level layer's group
    /// holds only its own, whatever their prefix.
    fn find(
        file: &'f Hdf5File,
        group: &str,
        layer: &str,
        own_group: bool,
    ) -> Result<LayerWeights<'f>> {
        let src = file.source();
        if !file.has_group(group) {
            bail!("{src}: no weights for layer \"{layer}\" (group \"{group}\" is missing)");
        }
        let names = file
            .string_list_attr(group, "weight_names")?
            .ok_or_else(|| anyhow!("{src}: group \"{group}\" has no \"weight_names\" attribute"))?;
        let split = |n: &str| -> (String, String) {
            let parts: Vec<&str> = n.split('/').collect();
            let var = parts.last().unwrap_or(&"").split(':').next().unwrap_or("");
            let owner = if parts.len() >= 2 {
                parts[parts.len() - 2]
            } else {
                ""
            };
            (owner.to_string(), var.to_string())
        };
        let mut selected: Vec<(&String, String)> = names
            .iter()
            .filter_map(|n| {
                let (owner, var) = split(n);
                (owner == layer).then_some((n, var))
            })
            .collect();
        if selected.is_empty() && own_group {
            selected = names.iter().map(|n| (n, split(n).1)).collect();
        }
        let mut paths: HashMap<String, String> = HashMap::new();
        for (name, var) in selected {
            let path = format!("{group}/{name}");
            // Two variables of one name leave no way to tell which one the layer uses.
            if let Some(first) = paths.insert(var.clone(), path.clone()) {
                bail!("{src}: layer \"{layer}\" has two weights named \"{var}\" in \"weight_names\" of group \"{group}\" (\"{first}\" and \"{path}\")");
            }
        }
        Ok(LayerWeights {
            file,
            paths,
            group: group.to_string(),
        })
    }

    /// The values of weight `var`, which must have `shape`: the declared shape is checked
    /// before anything is read, so the file never sizes an allocation.
    fn take(&self, var: &str, shape: &[usize], ctx: &str) -> Result<Vec<f32>> {
        let path = self
            .paths
            .get(var)
            .ok_or_else(|| anyhow!("{ctx}: missing weight \"{var}\" in \"{}\"", self.group))?;
        let dataset = self.file.float_dataset(path)?;
        if !dataset
            .shape
            .iter()
            .copied()
            .eq(shape.iter().map(|&d| d as u64))
        {
            bail!(
                "{ctx}: weight \"{var}\" has shape {:?}, expected {shape:?}",
                dataset.shape
            );
        }
        let data = dataset.read()?;
        if data.iter().any(|v| !v.is_finite()) {
            bail!("{ctx}: weight \"{var}\" holds NaN or infinite values");
        }
        Ok(data)
    }

    fn bias(&self, use_bias: bool, n: usize, ctx: &str) -> Result<Vec<f32>> {
        if use_bias {
            self.take("bias", &[n], ctx)
        } else {
            Ok(vec![0.0; n])
        }
    }
}
