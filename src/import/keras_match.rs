//! Finding the ASNA attention model in a Keras layer graph. The model's layer table
//! (`model::layers`) is walked from the score back to the two inputs, and each layer it lists
//! is looked for in the graph: its Keras layer (type, filters, kernel, stride, padding,
//! activation, batch-norm order and axis) and the tensor it reads (pooling, upsampling,
//! Siamese difference, gates, sums, concatenations in any order) are checked against the table,
//! and every layer with weights is assigned its parameter name. What is Keras's own is written
//! here: its class names and configuration keys, the nested shared encoder, the input
//! normalisation and the authors' BGR colour order. Keras's layer numbering is never relied
//! on; only the connections that `model_config` records.

use super::keras_graph::{is_functional, tensor_ref, Call, Graph, Layer, TensorRef};
use crate::model::layers::{self as table, Input, LayerKind};
use crate::ops::Act;
use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// The spec's batch-norm epsilon (Keras's default).
pub(super) const SPEC_BN_EPS: f64 = 1e-3;
/// The largest batch-norm epsilon accepted.
const MAX_BN_EPS: f64 = 1.0;
/// The spec's leaky-ReLU slope.
const LEAKY_SLOPE: f64 = 0.5;
/// Input normalisation of the spec, `(u8 - 127.5) / 127.5`.
const INPUT_OFFSET: f64 = 127.5;
const INPUT_SCALE: f64 = 127.5;

/// The plan of an ASNA attention model in `graph` (every layer with weights and what it
/// becomes) and the name of its nested encoder; the error says what differs.
pub(super) fn match_asna(graph: &Graph) -> Result<(Vec<Planned>, Option<String>)> {
    let mut m = Matcher {
        outer: graph,
        encoder: None,
        plan: Vec::new(),
        found: Vec::new(),
        deepest: 0,
    };
    m.match_model()?;
    Ok((m.plan, m.encoder.map(|(l, _)| l.name.clone())))
}

/// What one Keras layer becomes.
#[derive(Debug)]
pub(super) enum What {
    /// `input_order[c]` is the spec's input channel of Keras input channel `c` (empty: the same).
    Conv {
        use_bias: bool,
        input_order: Vec<usize>,
    },
    Dense {
        use_bias: bool,
    },
    BatchNorm {
        eps: f64,
        center: bool,
        scale: bool,
    },
}

#[derive(Debug)]
pub(super) struct Planned {
    /// The spec's layer name, e.g. `dec.conv2`.
    pub spec: String,
    pub layer: String,
    /// Inside the shared encoder (a nested model, whose weights sit in its own group).
    pub in_encoder: bool,
    pub what: What,
}

/// An activation as messages name it.
fn act_name(a: Act) -> &'static str {
    match a {
        Act::None => "no activation",
        Act::LeakyRelu => "leaky ReLU (slope 0.5)",
        Act::Relu => "ReLU",
        Act::Sigmoid => "sigmoid",
        Act::Tanh => "tanh",
    }
}

/// Which graph a tensor lives in: the outer model or the shared encoder inside it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    Outer,
    Encoder,
}

struct Matcher<'a> {
    outer: &'a Graph,
    /// The shared encoder (a nested model) and, for each of its two calls, the index of the
    /// model input that feeds it.
    encoder: Option<(&'a Layer, [usize; 2])>,
    plan: Vec<Planned>,
    /// Where each table layer's output was found, so that a tensor the table reads twice
    /// (the attention's features, the residual stream) is one tensor in the graph too.
    found: Vec<(&'static str, Scope, TensorRef)>,
    /// The longest the plan has grown: how far an attempt got before it failed.
    deepest: usize,
}

/// Matching state to roll a failed attempt back to.
#[derive(Clone, Copy)]
struct Mark<'a> {
    plan: usize,
    found: usize,
    encoder: Option<(&'a Layer, [usize; 2])>,
}

/// Every order of `0..n`, the identity first.
fn orders(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for first in 0..n {
        for rest in orders(n - 1) {
            let mut order = vec![first];
            order.extend(rest.into_iter().map(|i| if i >= first { i + 1 } else { i }));
            all.push(order);
        }
    }
    all
}

fn describe(l: &Layer) -> String {
    format!("{} \"{}\"", l.class, l.name)
}

fn cfg<'l>(l: &'l Layer, key: &str) -> Option<&'l Value> {
    l.config.get(key)
}

/// An int or a pair of ints (`kernel_size`, `strides`, ...), as a pair.
fn cfg_pair(l: &Layer, key: &str) -> Option<(usize, usize)> {
    match cfg(l, key)? {
        Value::Number(n) => n.as_u64().map(|v| (v as usize, v as usize)),
        Value::Array(a) if a.len() == 2 => Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)),
        _ => None,
    }
}

/// A configuration value as model_config writes it.
fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "none".to_string(), Value::to_string)
}

fn cfg_str<'l>(l: &'l Layer, key: &str) -> Option<&'l str> {
    cfg(l, key).and_then(Value::as_str)
}

fn cfg_f64(l: &Layer, key: &str) -> Option<f64> {
    cfg(l, key).and_then(Value::as_f64)
}

fn cfg_bool(l: &Layer, key: &str, default: bool) -> bool {
    cfg(l, key).and_then(Value::as_bool).unwrap_or(default)
}

fn check_channels_last(l: &Layer) -> Result<()> {
    match cfg_str(l, "data_format") {
        None | Some("channels_last") => Ok(()),
        Some(other) => bail!(
            "{} uses data_format {other}, ASNA is channels-last",
            describe(l)
        ),
    }
}

/// Refuses layer `l` (standing for `spec`) when its activation is not the table's.
fn expect_activation(l: &Layer, spec: &str, found: Act, want: Act) -> Result<()> {
    if found != want {
        bail!(
            "{} ({spec}) has {}, expected {}",
            describe(l),
            act_name(found),
            act_name(want)
        );
    }
    Ok(())
}

/// A Keras activation name as one of the model's.
fn activation_of(l: &Layer, name: &str) -> Result<Act> {
    Ok(match name {
        "linear" => Act::None,
        "relu" => Act::Relu,
        "sigmoid" => Act::Sigmoid,
        "tanh" => Act::Tanh,
        other => bail!(
            "{} has activation \"{other}\", which ASNA does not use",
            describe(l)
        ),
    })
}

/// Minimal base64 (standard alphabet; whitespace and padding ignored), for the serialised
/// code of Lambda layers.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for ch in s.bytes() {
        let v = match ch {
            b'A'..=b'Z' => ch - b'A',
            b'a'..=b'z' => ch - b'a' + 26,
            b'0'..=b'9' => ch - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl<'a> Matcher<'a> {
    fn graph(&self, scope: Scope) -> &'a Graph {
        match scope {
            Scope::Outer => self.outer,
            Scope::Encoder => self
                .encoder
                .and_then(|(l, _)| l.inner.as_deref())
                .expect("encoder found before its graph is walked"),
        }
    }

    /// `t`, or the tensor it passes on unchanged at inference (through Dropout and linear
    /// Activation layers).
    fn resolve(&self, scope: Scope, t: &TensorRef) -> Result<TensorRef> {
        let g = self.graph(scope);
        let mut t = t.clone();
        loop {
            let (l, call) = g.producer(&t)?;
            let identity = l.class == "Dropout"
                || (l.class == "Activation" && cfg_str(l, "activation") == Some("linear"));
            match call {
                Some(c) if identity && c.inputs.len() == 1 => t = c.inputs[0].clone(),
                _ => return Ok(t),
            }
        }
    }

    /// The layer and call that produced `t`, looking through identities at inference. Input
    /// layers have no call.
    fn producer(&self, scope: Scope, t: &TensorRef) -> Result<(&'a Layer, Option<&'a Call>)> {
        let t = self.resolve(scope, t)?;
        self.graph(scope).producer(&t)
    }

    /// Like `producer`, for a layer of one of `classes` with a call of `inputs` inputs.
    fn expect_layer(
        &self,
        scope: Scope,
        t: &TensorRef,
        classes: &[&str],
        inputs: usize,
        role: &str,
    ) -> Result<(&'a Layer, &'a Call)> {
        let (l, call) = self.producer(scope, t)?;
        let call = match call {
            Some(c) if classes.contains(&l.class.as_str()) => c,
            _ => bail!(
                "expected {} for {role}, found {}",
                classes.join(" or "),
                describe(l)
            ),
        };
        if call.inputs.len() != inputs {
            bail!(
                "{} ({role}) has {} inputs, expected {inputs}",
                describe(l),
                call.inputs.len()
            );
        }
        Ok((l, call))
    }

    /// `conv -> [activation layer] -> [batch norm]` ending at `t`, checked against the table's
    /// layer `row`; recorded in the plan. Returns the convolution's input and the plan index
    /// of the convolution.
    fn conv_block(
        &mut self,
        scope: Scope,
        t: &TensorRef,
        row: &table::Layer,
    ) -> Result<(TensorRef, usize)> {
        let (spec, stride) = (row.name, row.stride);
        let mut t = t.clone();
        let mut bn = None;
        if let Some(bn_spec) = row.bn {
            let (l, c) = self.expect_layer(
                scope,
                &t,
                &["BatchNormalization"],
                1,
                &format!("{bn_spec} (batch norm after the activation)"),
            )?;
            let axis_ok = match cfg(l, "axis") {
                None => true,
                Some(Value::Number(n)) => matches!(n.as_i64(), Some(-1) | Some(3)),
                Some(Value::Array(a)) => {
                    a.len() == 1 && matches!(a[0].as_i64(), Some(-1) | Some(3))
                }
                _ => false,
            };
            if !axis_ok {
                bail!("{} normalises another axis than the channels", describe(l));
            }
            let eps = match cfg(l, "epsilon") {
                None => SPEC_BN_EPS,
                Some(v) => v.as_f64().unwrap_or(f64::NAN),
            };
            // Folded into the running variance: an epsilon that is not small would swamp it
            // (or overflow it).
            if !(eps > 0.0 && eps <= MAX_BN_EPS) {
                bail!(
                    "{} has epsilon {}, expected a small positive number (at most {MAX_BN_EPS}; Keras's default is {SPEC_BN_EPS})",
                    describe(l),
                    cfg(l, "epsilon").map_or(String::new(), Value::to_string)
                );
            }
            bn = Some(Planned {
                spec: bn_spec.to_string(),
                layer: l.name.clone(),
                in_encoder: scope == Scope::Encoder,
                what: What::BatchNorm {
                    eps,
                    center: cfg_bool(l, "center", true),
                    scale: cfg_bool(l, "scale", true),
                },
            });
            t = c.inputs[0].clone();
        }
        // An activation may be a layer of its own after the convolution.
        let mut separate: Option<(Act, &Layer)> = None;
        {
            let (l, c) = self.producer(scope, &t)?;
            let a = match l.class.as_str() {
                "LeakyReLU" => {
                    let slope = cfg_f64(l, "alpha")
                        .or_else(|| cfg_f64(l, "negative_slope"))
                        .unwrap_or(0.3);
                    if (slope - LEAKY_SLOPE).abs() > 1e-9 {
                        bail!(
                            "{} has slope {slope}, ASNA's leaky ReLU has {LEAKY_SLOPE}",
                            describe(l)
                        );
                    }
                    Some(Act::LeakyRelu)
                }
                "ReLU" => {
                    let plain = cfg(l, "max_value").is_none_or(Value::is_null)
                        && cfg_f64(l, "negative_slope").unwrap_or(0.0) == 0.0
                        && cfg_f64(l, "threshold").unwrap_or(0.0) == 0.0;
                    if !plain {
                        bail!("{} is not a plain ReLU", describe(l));
                    }
                    Some(Act::Relu)
                }
                "Activation" => Some(activation_of(l, cfg_str(l, "activation").unwrap_or("?"))?),
                _ => None,
            };
            if let (Some(a), Some(c)) = (a, c) {
                if c.inputs.len() != 1 {
                    bail!("{} has {} inputs", describe(l), c.inputs.len());
                }
                separate = Some((a, l));
                t = c.inputs[0].clone();
            }
        }
        let (l, c) = self.expect_layer(scope, &t, &["Conv2D"], 1, spec)?;
        let conv_act = activation_of(l, cfg_str(l, "activation").unwrap_or("linear"))?;
        let found = match separate {
            Some((a, al)) => {
                if conv_act != Act::None {
                    bail!(
                        "{} has an activation and is followed by {}",
                        describe(l),
                        describe(al)
                    );
                }
                a
            }
            None => conv_act,
        };
        expect_activation(l, spec, found, row.act)?;
        let (cout, k) = (row.channels, row.kernel);
        let filters = cfg(l, "filters").and_then(Value::as_u64).unwrap_or(0) as usize;
        if filters != cout {
            bail!(
                "{} ({spec}) has {filters} filters, expected {cout}",
                describe(l)
            );
        }
        if cfg_pair(l, "kernel_size") != Some((k, k)) {
            bail!(
                "{} ({spec}) has kernel_size {}, expected {k}x{k}",
                describe(l),
                shown(cfg(l, "kernel_size"))
            );
        }
        if cfg_pair(l, "strides").unwrap_or((1, 1)) != (stride, stride) {
            bail!(
                "{} ({spec}) has strides {}, expected {stride}",
                describe(l),
                shown(cfg(l, "strides"))
            );
        }
        if cfg_pair(l, "dilation_rate").unwrap_or((1, 1)) != (1, 1)
            || cfg(l, "groups").and_then(Value::as_u64).unwrap_or(1) != 1
        {
            bail!("{} ({spec}) is dilated or grouped", describe(l));
        }
        let padding = cfg_str(l, "padding").unwrap_or("valid");
        // A 1x1 stride-1 convolution pads nothing either way.
        if padding != "same" && !(k == 1 && stride == 1) {
            bail!(
                "{} ({spec}) has padding \"{padding}\", ASNA pads \"same\"",
                describe(l)
            );
        }
        check_channels_last(l)?;
        let index = self.record(Planned {
            spec: spec.to_string(),
            layer: l.name.clone(),
            in_encoder: scope == Scope::Encoder,
            what: What::Conv {
                use_bias: cfg_bool(l, "use_bias", true),
                input_order: Vec::new(),
            },
        });
        if let Some(bn) = bn {
            self.record(bn);
        }
        Ok((c.inputs[0].clone(), index))
    }

    /// Adds `p` to the plan; returns its index.
    fn record(&mut self, p: Planned) -> usize {
        self.plan.push(p);
        self.deepest = self.deepest.max(self.plan.len());
        self.plan.len() - 1
    }

    /// The dense layer that produced `t`, checked against the table's layer `row`; recorded in
    /// the plan. Returns its input and its plan index.
    fn dense(
        &mut self,
        scope: Scope,
        t: &TensorRef,
        row: &table::Layer,
    ) -> Result<(TensorRef, usize)> {
        let spec = row.name;
        let (l, c) = self.expect_layer(scope, t, &["Dense"], 1, spec)?;
        let found = activation_of(l, cfg_str(l, "activation").unwrap_or("linear"))?;
        expect_activation(l, spec, found, row.act)?;
        let units = cfg(l, "units").and_then(Value::as_u64).unwrap_or(0) as usize;
        if units != row.channels {
            bail!(
                "{} ({spec}) has {units} units, expected {}",
                describe(l),
                row.channels
            );
        }
        let index = self.record(Planned {
            spec: spec.to_string(),
            layer: l.name.clone(),
            in_encoder: scope == Scope::Encoder,
            what: What::Dense {
                use_bias: cfg_bool(l, "use_bias", true),
            },
        });
        Ok((c.inputs[0].clone(), index))
    }

    fn set_input_order(&mut self, conv: usize, order: Vec<usize>) {
        if let What::Conv { input_order, .. } = &mut self.plan[conv].what {
            *input_order = order;
        }
    }

    /// Input channel order of a convolution fed by a concatenation whose inputs have
    /// `widths` channels and sit at `spec_slot[i]` in the spec's concatenation.
    fn concat_order(widths: &[usize], spec_slot: &[usize]) -> Vec<usize> {
        let mut spec_widths = vec![0; widths.len()];
        for (i, &s) in spec_slot.iter().enumerate() {
            spec_widths[s] = widths[i];
        }
        let spec_start: Vec<usize> = (0..widths.len())
            .map(|s| spec_widths[..s].iter().sum())
            .collect();
        let mut order = Vec::new();
        for (i, &w) in widths.iter().enumerate() {
            order.extend((0..w).map(|c| spec_start[spec_slot[i]] + c));
        }
        order
    }

    fn match_model(&mut self) -> Result<()> {
        let g = self.outer;
        if g.inputs.len() != 2 {
            bail!(
                "it has {} inputs, ASNA has two (reference, distorted)",
                g.inputs.len()
            );
        }
        for input in &g.inputs {
            let (l, _) = g.producer(input)?;
            let shape = cfg(l, "batch_input_shape").or_else(|| cfg(l, "batch_shape"));
            if let Some(Value::Array(s)) = shape {
                let dims: Vec<Option<u64>> = s.iter().map(Value::as_u64).collect();
                let side = Some(table::SIZE as u64);
                if dims.len() != 4 || dims[1..] != [side, side, Some(3)] {
                    bail!(
                        "input \"{}\" has shape {}, ASNA takes {size}x{size}x3 images",
                        l.name,
                        shown(shape),
                        size = table::SIZE
                    );
                }
            }
        }
        if g.outputs.len() != 1 {
            bail!("it has {} outputs, ASNA has one score", g.outputs.len());
        }
        // From the score back to the encoder's features, then the shared encoder itself.
        self.match_input(Scope::Outer, &g.outputs[0], &Input::Out(table::SCORE))?;
        self.match_encoder()
    }

    /// The nested encoder: its outputs are the table's `FEATURES`, in order, and it reads the
    /// images.
    fn match_encoder(&mut self) -> Result<()> {
        let g = self.graph(Scope::Encoder);
        if g.inputs.len() != 1 || g.outputs.len() != table::FEATURES.len() {
            bail!(
                "the encoder has {} inputs and {} outputs, ASNA's has one and {}",
                g.inputs.len(),
                g.outputs.len(),
                table::FEATURES.len()
            );
        }
        for (scale, name) in table::FEATURES.iter().enumerate().rev() {
            self.match_input(Scope::Encoder, &g.outputs[scale], &Input::Out(name))?;
        }
        // The authors' images were BGR (OpenCV): asna's RGB input needs the first
        // convolution's input channels turned around.
        let first = table::ENCODER[0].name;
        let conv0 = self
            .plan
            .iter()
            .position(|p| p.spec == first)
            .expect("the encoder's first convolution is matched");
        self.set_input_order(conv0, vec![2, 1, 0]);
        Ok(())
    }

    /// The table's layer `row` producing `t`, then what it reads.
    fn match_layer(
        &mut self,
        scope: Scope,
        t: &TensorRef,
        row: &'static table::Layer,
    ) -> Result<()> {
        let t = self.resolve(scope, t)?;
        if let Some((_, s, at)) = self.found.iter().find(|(name, ..)| *name == row.name) {
            if (*s, at) == (scope, &t) {
                return Ok(());
            }
            bail!(
                "{} is read both from {at} and from {t}, which are different tensors",
                row.name
            );
        }
        let (input, index) = match row.kind {
            LayerKind::Conv => self.conv_block(scope, &t, row)?,
            LayerKind::Dense => self.dense(scope, &t, row)?,
        };
        self.found.push((row.name, scope, t));
        match &row.input {
            Input::Concat(parts) => self.concatenation(scope, &input, parts, index),
            other => self.match_input(scope, &input, other),
        }
    }

    /// `t` as the table's `input`.
    fn match_input(&mut self, scope: Scope, t: &TensorRef, input: &Input) -> Result<()> {
        match *input {
            Input::Images => {
                let t = self.resolve(scope, t)?;
                let g = self.graph(scope);
                if scope != Scope::Encoder || t != g.inputs[0] {
                    bail!("the encoder's first convolution does not read its input");
                }
                Ok(())
            }
            Input::Out(name) => self.match_layer(scope, t, table::layer(name)),
            Input::Pool(x) => {
                let (l, c) =
                    self.expect_layer(scope, t, &["MaxPooling2D"], 1, "a 2x2 max pooling")?;
                check_pool(l)?;
                self.match_input(scope, &c.inputs[0].clone(), x)
            }
            Input::Up(x) => {
                let (l, c) =
                    self.expect_layer(scope, t, &["UpSampling2D"], 1, "the decoder's upsampling")?;
                if cfg_pair(l, "size") != Some((2, 2))
                    || cfg_str(l, "interpolation").unwrap_or("nearest") != "nearest"
                {
                    bail!("{} is not a 2x nearest-neighbour upsampling", describe(l));
                }
                check_channels_last(l)?;
                self.match_input(scope, &c.inputs[0].clone(), x)
            }
            Input::Distorted(&Input::Out(name)) => {
                let want = table::scale_of(name);
                let (call, scale) = self.encoder_output(t)?;
                if scale != want {
                    bail!("the decoder starts from encoder output {scale}, ASNA's starts from output {want}");
                }
                if self.encoder.expect("encoder found").1[call] != 1 {
                    // The distorted image is the second input.
                    bail!("the decoder's context branch starts from the first input's features; ASNA starts it from the second (distorted) image's");
                }
                Ok(())
            }
            Input::AbsDiff(&Input::Out(name)) => self.abs_difference(t, table::scale_of(name)),
            Input::MeanHw(x) => {
                let (l, c) = self.producer(scope, t)?;
                let mut pooled = t.clone();
                if let ("Reshape", Some(c)) = (l.class.as_str(), c) {
                    let target: Option<Vec<u64>> = cfg(l, "target_shape")
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().map(Value::as_u64).collect());
                    if target.as_deref().map(|t| &t[..2]) != Some(&[1, 1]) {
                        bail!("{} does not make the pooled vector 1x1", describe(l));
                    }
                    pooled = c.inputs[0].clone();
                }
                let (l, c) = self.expect_layer(
                    scope,
                    &pooled,
                    &["GlobalAveragePooling2D"],
                    1,
                    "the channel gate's pooling",
                )?;
                check_channels_last(l)?;
                self.match_input(scope, &c.inputs[0].clone(), x)
            }
            Input::Mul(a, b) => {
                let (l, c) = self.producer(scope, t)?;
                let multiplies = match l.class.as_str() {
                    "Multiply" => true,
                    // The code of a Lambda is serialised Python bytecode; ASNA's gates call
                    // tf.multiply, whose name it holds.
                    "Lambda" => cfg(l, "function")
                        .and_then(|f| f.get(0).or(Some(f)))
                        .and_then(Value::as_str)
                        .and_then(base64_decode)
                        .is_some_and(|b| b.windows(8).any(|w| w == b"multiply")),
                    _ => false,
                };
                let c = c.filter(|_| multiplies).ok_or_else(|| {
                    anyhow!(
                        "expected a product (an attention gate), found {}",
                        describe(l)
                    )
                })?;
                if c.inputs.len() != 2 {
                    bail!(
                        "{} has {} inputs, an attention gate multiplies two",
                        describe(l),
                        c.inputs.len()
                    );
                }
                self.match_any_order(scope, &c.inputs, &[*a, *b])?;
                Ok(())
            }
            Input::Add(a, b) => {
                let (_, c) = self.expect_layer(scope, t, &["Add"], 2, "a residual sum")?;
                self.match_any_order(scope, &c.inputs, &[*a, *b])?;
                Ok(())
            }
            Input::Flatten(x) => {
                let (l, c) = self.expect_layer(
                    scope,
                    t,
                    &["Flatten"],
                    1,
                    "the flatten before the dense head",
                )?;
                check_channels_last(l)?;
                self.match_input(scope, &c.inputs[0].clone(), x)
            }
            Input::Concat(_) | Input::Distorted(_) | Input::AbsDiff(_) => {
                unreachable!(
                    "the table concatenates only layer inputs and compares only encoder outputs"
                )
            }
        }
    }

    /// The concatenation `parts` at `t`, read by plan entry `consumer`: in any order, the
    /// consumer's input channels being reordered to match.
    fn concatenation(
        &mut self,
        scope: Scope,
        t: &TensorRef,
        parts: &[Input],
        consumer: usize,
    ) -> Result<()> {
        let role = format!("the concatenation {} reads", self.plan[consumer].spec);
        let (l, c) = self.expect_layer(scope, t, &["Concatenate"], parts.len(), &role)?;
        match cfg(l, "axis").and_then(Value::as_i64) {
            None | Some(-1) | Some(3) => {}
            Some(a) => bail!("{} joins along axis {a}, not the channels", describe(l)),
        }
        let slots = self.match_any_order(scope, &c.inputs, parts)?;
        let widths: Vec<usize> = slots.iter().map(|&s| table::shape(&parts[s]).1).collect();
        self.set_input_order(consumer, Self::concat_order(&widths, &slots));
        Ok(())
    }

    /// Matches `tensors` to `parts`, one each, in the first order that fits, and returns the
    /// part of each tensor (Keras may join or add them in any order). When no order fits, the
    /// error is that of the order that got furthest: the one the file most likely means.
    fn match_any_order(
        &mut self,
        scope: Scope,
        tensors: &[TensorRef],
        parts: &[Input],
    ) -> Result<Vec<usize>> {
        assert_eq!(tensors.len(), parts.len(), "one tensor per part");
        let mut best: Option<(usize, anyhow::Error)> = None;
        for order in orders(parts.len()) {
            let mark = self.mark();
            let deepest = std::mem::replace(&mut self.deepest, self.plan.len());
            let result = tensors
                .iter()
                .zip(&order)
                .try_for_each(|(t, &part)| self.match_input(scope, t, &parts[part]));
            let reached = self.deepest;
            self.deepest = deepest.max(reached);
            match result {
                Ok(()) => return Ok(order),
                Err(e) => {
                    self.reset(mark);
                    if best.as_ref().is_none_or(|(r, _)| reached > *r) {
                        best = Some((reached, e));
                    }
                }
            }
        }
        Err(best.expect("at least one order").1)
    }

    fn mark(&self) -> Mark<'a> {
        Mark {
            plan: self.plan.len(),
            found: self.found.len(),
            encoder: self.encoder,
        }
    }

    fn reset(&mut self, mark: Mark<'a>) {
        self.plan.truncate(mark.plan);
        self.found.truncate(mark.found);
        self.encoder = mark.encoder;
    }

    /// `|enc(input a)[level] - enc(input b)[level]|` of the two inputs' encoder outputs.
    fn abs_difference(&mut self, t: &TensorRef, level: usize) -> Result<()> {
        let (l, call) = self.producer(Scope::Outer, t)?;
        let is_abs = l.class == "TFOpLambda" && cfg_str(l, "function") == Some("math.abs");
        let c = call
            .filter(|c| is_abs && c.inputs.len() == 1)
            .ok_or_else(|| {
                anyhow!(
                    "expected |difference| of the encoder features at scale {}, found {}",
                    level + 1,
                    describe(l)
                )
            })?;
        let (sl, sc) = self.producer(Scope::Outer, &c.inputs[0])?;
        let operands: Vec<TensorRef> = match (sl.class.as_str(), cfg_str(sl, "function"), sc) {
            ("TFOpLambda", Some("math.subtract"), Some(sc)) => {
                let y = sc.kwargs.get("y").and_then(tensor_ref);
                sc.inputs.iter().cloned().chain(y).collect()
            }
            ("Subtract", _, Some(sc)) => sc.inputs.clone(),
            _ => bail!(
                "expected a difference of encoder features, found {}",
                describe(sl)
            ),
        };
        if operands.len() != 2 {
            bail!("{} does not subtract two tensors", describe(sl));
        }
        let a = self.encoder_output(&operands[0])?;
        let b = self.encoder_output(&operands[1])?;
        if a.1 != level || b.1 != level || a.0 == b.0 {
            bail!(
                "{} does not subtract the two images' encoder features at scale {}",
                describe(sl),
                level + 1
            );
        }
        Ok(())
    }

    /// (call, output) of the shared encoder that produced `t`; finds the encoder on first use.
    fn encoder_output(&mut self, t: &TensorRef) -> Result<(usize, usize)> {
        let (l, _) = self.outer.producer(t)?;
        if !is_functional(&l.class) || l.inner.is_none() {
            bail!(
                "expected the shared encoder's features, found {}",
                describe(l)
            );
        }
        match self.encoder {
            Some((enc, _)) if enc.name != l.name => {
                bail!(
                    "two different encoders (\"{}\", \"{}\"); ASNA shares one",
                    enc.name,
                    l.name
                )
            }
            Some(_) => {}
            None => {
                if l.calls.len() != 2 {
                    bail!(
                        "the encoder \"{}\" is called {} times, ASNA calls it on two images",
                        l.name,
                        l.calls.len()
                    );
                }
                let mut inputs = [0; 2];
                for (i, call) in l.calls.iter().enumerate() {
                    if call.inputs.len() != 1 {
                        bail!(
                            "the encoder \"{}\" takes {} inputs",
                            l.name,
                            call.inputs.len()
                        );
                    }
                    inputs[i] = self.preprocessed_input(&call.inputs[0])?;
                }
                if inputs[0] == inputs[1] {
                    bail!("the encoder \"{}\" sees the same input twice", l.name);
                }
                self.encoder = Some((l, inputs));
            }
        }
        let call = t
            .node
            .checked_sub(1)
            .filter(|&c| c < 2)
            .ok_or_else(|| anyhow!("unknown call {} of the encoder \"{}\"", t.node, l.name))?;
        let outputs = l.inner.as_ref().map_or(0, |g| g.outputs.len());
        if t.tensor >= outputs {
            bail!("encoder output {} does not exist", t.tensor);
        }
        Ok((call, t.tensor))
    }

    /// The model input (0 or 1) that reaches `t` through `(x - 127.5) / 127.5`, checking it.
    fn preprocessed_input(&self, t: &TensorRef) -> Result<usize> {
        let mut t = t.clone();
        let mut ops: Vec<(String, f64)> = Vec::new();
        loop {
            let (l, call) = self.producer(Scope::Outer, &t)?;
            let Some(c) = call else {
                let index = self
                    .outer
                    .inputs
                    .iter()
                    .position(|i| i.layer == l.name)
                    .ok_or_else(|| {
                        anyhow!(
                            "the encoder reads {}, which is not a model input",
                            describe(l)
                        )
                    })?;
                ops.reverse();
                let want = [
                    ("math.subtract".to_string(), INPUT_OFFSET),
                    ("math.truediv".to_string(), INPUT_SCALE),
                ];
                if ops != want {
                    bail!("the images reach the encoder through {ops:?}, not (x - 127.5) / 127.5 as in ASNA");
                }
                return Ok(index);
            };
            let function = cfg_str(l, "function").unwrap_or("");
            if l.class != "TFOpLambda" || c.inputs.len() != 1 {
                bail!(
                    "the images reach the encoder through {}, not (x - 127.5) / 127.5 as in ASNA",
                    describe(l)
                );
            }
            match function {
                "convert_to_tensor" => {}
                "cast" => {
                    let dtype = c
                        .kwargs
                        .get("dtype")
                        .and_then(Value::as_str)
                        .unwrap_or("float32");
                    if dtype != "float32" {
                        bail!("{} casts the images to {dtype}", describe(l));
                    }
                }
                "math.subtract" | "math.truediv" => {
                    let y = c.kwargs.get("y").and_then(Value::as_f64).ok_or_else(|| {
                        anyhow!("{} does not apply a constant to the images", describe(l))
                    })?;
                    ops.push((function.to_string(), y));
                }
                other => bail!(
                    "the images reach the encoder through {} ({other}), not (x - 127.5) / 127.5",
                    describe(l)
                ),
            }
            t = c.inputs[0].clone();
        }
    }
}

fn check_pool(l: &Layer) -> Result<()> {
    if cfg_pair(l, "pool_size") != Some((2, 2))
        || cfg_pair(l, "strides").unwrap_or((2, 2)) != (2, 2)
    {
        bail!("{} is not a 2x2 stride-2 max pooling", describe(l));
    }
    check_channels_last(l)
}
