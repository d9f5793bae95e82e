//! Finding the ASNA attention model in a Keras layer graph: the graph is walked from the
//! score back to the two inputs, each step checked against the model description (layer
//! type, filters, kernel, stride, padding, activation, batch-norm order and axis), and every
//! layer with weights is assigned its parameter name in the description. Keras's layer
//! numbering is never relied on; only the connections that `model_config` records.

use super::keras_graph::{is_functional, tensor_ref, Call, Graph, Layer, TensorRef};
use crate::model::asna::specs;
use crate::model::params::{ParamSpec, SpecList};
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

pub(super) fn spec_of<'a>(specs: &'a SpecList, name: &str) -> &'a ParamSpec {
    specs
        .0
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("the model description has no parameter {name}"))
}

/// The plan of an ASNA attention model in `graph` (every layer with weights and what it
/// becomes) and the name of its nested encoder; the error says what differs.
pub(super) fn match_asna(graph: &Graph) -> Result<(Vec<Planned>, Option<String>)> {
    let mut m = Matcher {
        outer: graph,
        encoder: None,
        plan: Vec::new(),
        specs: specs(),
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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Linear,
    Leaky,
    Relu,
    Sigmoid,
    Tanh,
}

impl Act {
    fn name(self) -> &'static str {
        match self {
            Act::Linear => "no activation",
            Act::Leaky => "leaky ReLU (slope 0.5)",
            Act::Relu => "ReLU",
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
        }
    }
}

/// Which graph a tensor lives in: the outer model or the shared encoder inside it.
#[derive(Clone, Copy, PartialEq)]
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
    specs: SpecList,
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

/// Refuses layer `l` (standing for `spec`) when its activation is not the spec's.
fn expect_activation(l: &Layer, spec: &str, found: Act, want: Act) -> Result<()> {
    if found != want {
        bail!(
            "{} ({spec}) has {}, expected {}",
            describe(l),
            found.name(),
            want.name()
        );
    }
    Ok(())
}

/// A Keras activation name as one of the spec's.
fn activation_of(l: &Layer, name: &str) -> Result<Act> {
    Ok(match name {
        "linear" => Act::Linear,
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

    /// The layer and call that produced `t`, looking through identities at inference
    /// (Dropout, linear Activation). Input layers have no call.
    fn producer(&self, scope: Scope, t: &TensorRef) -> Result<(&'a Layer, Option<&'a Call>)> {
        let g = self.graph(scope);
        let mut t = t.clone();
        loop {
            let (l, call) = g.producer(&t)?;
            let identity = l.class == "Dropout"
                || (l.class == "Activation" && cfg_str(l, "activation") == Some("linear"));
            match call {
                Some(c) if identity && c.inputs.len() == 1 => t = c.inputs[0].clone(),
                _ => return Ok((l, call)),
            }
        }
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

    /// `conv -> [activation layer] -> [batch norm]` ending at `t`, checked against the spec's
    /// layer `spec` (filters and kernel from its weight shape); recorded in the plan. Returns
    /// the convolution's input and the plan index of the convolution.
    fn conv_block(
        &mut self,
        scope: Scope,
        t: &TensorRef,
        spec: &str,
        bn_spec: Option<&str>,
        stride: usize,
        act: Act,
    ) -> Result<(TensorRef, usize)> {
        let mut t = t.clone();
        let mut bn = None;
        if let Some(bn_spec) = bn_spec {
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
                    Some(Act::Leaky)
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
                if conv_act != Act::Linear {
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
        expect_activation(l, spec, found, act)?;
        let shape = &spec_of(&self.specs, &format!("{spec}.weight")).file_shape;
        let (cout, k) = (shape[0], shape[2]);
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
        self.plan.push(Planned {
            spec: spec.to_string(),
            layer: l.name.clone(),
            in_encoder: scope == Scope::Encoder,
            what: What::Conv {
                use_bias: cfg_bool(l, "use_bias", true),
                input_order: Vec::new(),
            },
        });
        let index = self.plan.len() - 1;
        self.plan.extend(bn);
        Ok((c.inputs[0].clone(), index))
    }

    /// The input of the convolution (with an optional activation layer) that produced `t`,
    /// without recording anything; None when `t` is not such a convolution.
    fn peek_conv_input(&self, t: &TensorRef) -> Option<(TensorRef, Act)> {
        let (l, c) = self.producer(Scope::Outer, t).ok()?;
        let c = c?;
        if l.class == "Conv2D" {
            let act = activation_of(l, cfg_str(l, "activation").unwrap_or("linear")).ok()?;
            return Some((c.inputs.first()?.clone(), act));
        }
        if l.class == "Activation" {
            // One activation layer, as conv_block takes: the convolution must come next.
            let act = activation_of(l, cfg_str(l, "activation")?).ok()?;
            let (conv, conv_call) = self.producer(Scope::Outer, c.inputs.first()?).ok()?;
            if conv.class != "Conv2D" {
                return None;
            }
            return Some((conv_call?.inputs.first()?.clone(), act));
        }
        None
    }

    fn dense(&mut self, t: &TensorRef, spec: &str, act: Act) -> Result<TensorRef> {
        let (l, c) = self.expect_layer(Scope::Outer, t, &["Dense"], 1, spec)?;
        let found = activation_of(l, cfg_str(l, "activation").unwrap_or("linear"))?;
        expect_activation(l, spec, found, act)?;
        let out = spec_of(&self.specs, &format!("{spec}.weight")).file_shape[0];
        let units = cfg(l, "units").and_then(Value::as_u64).unwrap_or(0) as usize;
        if units != out {
            bail!("{} ({spec}) has {units} units, expected {out}", describe(l));
        }
        self.plan.push(Planned {
            spec: spec.to_string(),
            layer: l.name.clone(),
            in_encoder: false,
            what: What::Dense {
                use_bias: cfg_bool(l, "use_bias", true),
            },
        });
        Ok(c.inputs[0].clone())
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
                if dims.len() != 4 || dims[1..] != [Some(288), Some(288), Some(3)] {
                    bail!(
                        "input \"{}\" has shape {}, ASNA takes 288x288x3 images",
                        l.name,
                        shown(shape)
                    );
                }
            }
        }
        if g.outputs.len() != 1 {
            bail!("it has {} outputs, ASNA has one score", g.outputs.len());
        }

        // Head, from the score back to the flatten.
        let t = self.dense(&g.outputs[0], "head.fc3", Act::Linear)?;
        let t = self.dense(&t, "head.fc2", Act::Tanh)?;
        let t = self.dense(&t, "head.fc1", Act::Relu)?;
        let (l, c) = self.expect_layer(
            Scope::Outer,
            &t,
            &["Flatten"],
            1,
            "the flatten before the dense head",
        )?;
        check_channels_last(l)?;
        let mut h = c.inputs[0].clone();

        // Three residual blocks h + conv(relu(conv(h))).
        for r in (0..3).rev() {
            let (l, c) = self.expect_layer(
                Scope::Outer,
                &h,
                &["Add"],
                2,
                &format!("residual block {r}"),
            )?;
            let branch = (0..2).find(|&b| {
                self.peek_conv_input(&c.inputs[b])
                    .and_then(|(inner, _)| self.peek_conv_input(&inner))
                    .is_some_and(|(start, _)| start == c.inputs[1 - b])
            });
            let Some(b) = branch else {
                bail!(
                    "{} is not a residual block conv(relu(conv(h))) + h",
                    describe(l)
                );
            };
            let (t, _) = self.conv_block(
                Scope::Outer,
                &c.inputs[b],
                &format!("res{r}.conv2"),
                None,
                1,
                Act::Linear,
            )?;
            self.conv_block(
                Scope::Outer,
                &t,
                &format!("res{r}.conv1"),
                None,
                1,
                Act::Relu,
            )?;
            h = c.inputs[1 - b].clone();
        }

        // Attention block.
        let (cat, att_out) = self.conv_block(Scope::Outer, &h, "att.out", None, 1, Act::Linear)?;
        let (l, c) = self.expect_layer(
            Scope::Outer,
            &cat,
            &["Concatenate"],
            3,
            "the attention block's concatenation",
        )?;
        self.check_channel_concat(l)?;
        let mut slots = [usize::MAX; 3];
        let mut x3: Option<TensorRef> = None;
        let mut rest = None;
        for (i, input) in c.inputs.iter().enumerate() {
            match self.gate(input)? {
                Some((channel, x)) => {
                    if x3.as_ref().is_some_and(|prev| *prev != x) {
                        bail!("the channel and spatial gates weigh different tensors");
                    }
                    x3 = Some(x);
                    slots[i] = if channel { 1 } else { 2 };
                }
                None => {
                    slots[i] = 0;
                    rest = Some(input.clone());
                }
            }
        }
        let mut sorted = slots;
        sorted.sort();
        let (Some(x3), Some(b), [0, 1, 2]) = (x3, rest, sorted) else {
            bail!(
                "{} does not join the decoder output, a channel-gated and a spatially gated tensor",
                describe(l)
            );
        };
        let a = spec_of(&self.specs, "att.conv2.weight").file_shape[0];
        let bw = spec_of(&self.specs, "att.out.weight").file_shape[1] - 2 * a;
        let widths: Vec<usize> = slots.iter().map(|&s| if s == 0 { bw } else { a }).collect();
        self.set_input_order(att_out, Self::concat_order(&widths, &slots));
        let (t, _) = self.conv_block(Scope::Outer, &x3, "att.conv2", None, 1, Act::Linear)?;
        let (t, _) =
            self.conv_block(Scope::Outer, &t, "att.conv1", Some("att.bn"), 1, Act::Relu)?;
        if t != b {
            bail!(
                "the attention block's first convolution does not read the tensor it concatenates"
            );
        }

        // Decoder, from its output back to the context branch.
        let (t, _) = self.conv_block(
            Scope::Outer,
            &b,
            "dec.down1",
            Some("dec.down_bn1"),
            2,
            Act::Leaky,
        )?;
        let (mut cat, mut consumer) = self.conv_block(
            Scope::Outer,
            &t,
            "dec.down0",
            Some("dec.down_bn0"),
            4,
            Act::Leaky,
        )?;
        for (level, spec, bn) in [
            (0, "dec.conv3", "dec.bn3"),
            (1, "dec.conv2", "dec.bn2"),
            (2, "dec.conv1", "dec.bn1"),
            (3, "dec.conv0", "dec.bn0"),
        ] {
            let low = self.skip_connection(&cat, level, consumer)?;
            (cat, consumer) = self.conv_block(Scope::Outer, &low, spec, Some(bn), 1, Act::Leaky)?;
        }
        let (pool, c) = self.expect_layer(
            Scope::Outer,
            &cat,
            &["MaxPooling2D"],
            1,
            "the pooling before dec.conv0",
        )?;
        check_pool(pool)?;
        let (call, level) = self.encoder_output(&c.inputs[0])?;
        if level != 3 {
            bail!("the decoder starts from encoder output {level}, ASNA's starts from the deepest (3)");
        }
        let inputs = self.encoder.expect("encoder found").1;
        if inputs[call] != 1 {
            // asna takes the context from the distorted image, which is the second input.
            bail!("the decoder's context branch starts from the first input's features; ASNA starts it from the second (distorted) image's");
        }

        // The shared encoder.
        self.match_encoder()
    }

    fn check_channel_concat(&self, l: &Layer) -> Result<()> {
        match cfg(l, "axis").and_then(Value::as_i64) {
            None | Some(-1) | Some(3) => Ok(()),
            Some(a) => bail!("{} joins along axis {a}, not the channels", describe(l)),
        }
    }

    /// For a gated tensor `x3 * sigmoid(...)`: whether the gate is the channel one (pooled)
    /// and x3; recorded in the plan. None when `t` is not a product.
    fn gate(&mut self, t: &TensorRef) -> Result<Option<(bool, TensorRef)>> {
        let (l, c) = self.producer(Scope::Outer, t)?;
        let Some(c) = c else { return Ok(None) };
        match l.class.as_str() {
            "Multiply" => {}
            "Lambda" => {
                // The code of a Lambda is serialised Python bytecode; ASNA's gates call
                // tf.multiply, whose name it holds.
                let code = cfg(l, "function")
                    .and_then(|f| f.get(0).or(Some(f)))
                    .and_then(Value::as_str)
                    .and_then(base64_decode);
                let multiplies = code.is_some_and(|b| b.windows(8).any(|w| w == b"multiply"));
                if !multiplies {
                    bail!(
                        "{} does not multiply its inputs (ASNA's attention gates do)",
                        describe(l)
                    );
                }
            }
            _ => return Ok(None),
        }
        if c.inputs.len() != 2 {
            bail!(
                "{} has {} inputs, an attention gate multiplies two",
                describe(l),
                c.inputs.len()
            );
        }
        let Some(gi) = (0..2).find(|&i| {
            self.peek_conv_input(&c.inputs[i])
                .is_some_and(|(_, act)| act == Act::Sigmoid)
        }) else {
            bail!("{} multiplies no sigmoid gate", describe(l));
        };
        let x = c.inputs[1 - gi].clone();
        let (inner, _) = self.peek_conv_input(&c.inputs[gi]).expect("checked");
        let (start, _) = self
            .peek_conv_input(&inner)
            .ok_or_else(|| anyhow!("the gate of {} is not conv(relu(conv(...)))", describe(l)))?;
        let (pl, pc) = self.producer(Scope::Outer, &start)?;
        let channel = matches!(pl.class.as_str(), "Reshape" | "GlobalAveragePooling2D");
        let names = if channel {
            ["att.ch2", "att.ch1"]
        } else {
            ["att.sp2", "att.sp1"]
        };
        let (t1, _) =
            self.conv_block(Scope::Outer, &c.inputs[gi], names[0], None, 1, Act::Sigmoid)?;
        let (t2, _) = self.conv_block(Scope::Outer, &t1, names[1], None, 1, Act::Relu)?;
        let source = if channel {
            let mut pooled = t2;
            if pl.class == "Reshape" {
                let target: Option<Vec<u64>> = cfg(pl, "target_shape")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_u64).collect());
                if target.as_deref().map(|t| &t[..2]) != Some(&[1, 1]) {
                    bail!("{} does not make the pooled vector 1x1", describe(pl));
                }
                pooled = pc.expect("reshape has a call").inputs[0].clone();
            }
            let (gl, gc) = self.expect_layer(
                Scope::Outer,
                &pooled,
                &["GlobalAveragePooling2D"],
                1,
                "the channel gate's pooling",
            )?;
            check_channels_last(gl)?;
            gc.inputs[0].clone()
        } else {
            t2
        };
        if source != x {
            bail!("{} weighs another tensor than its gate reads", describe(l));
        }
        Ok(Some((channel, x)))
    }

    /// `concat[up(low), |enc_a[level] - enc_b[level]|]` (either order) feeding plan entry
    /// `consumer`; returns `low`.
    fn skip_connection(
        &mut self,
        t: &TensorRef,
        level: usize,
        consumer: usize,
    ) -> Result<TensorRef> {
        let (l, c) = self.expect_layer(
            Scope::Outer,
            t,
            &["Concatenate"],
            2,
            &format!("the decoder's concatenation at encoder scale {}", level + 1),
        )?;
        self.check_channel_concat(l)?;
        let up = (0..2)
            .find(|&i| {
                self.producer(Scope::Outer, &c.inputs[i])
                    .is_ok_and(|(l, _)| l.class == "UpSampling2D")
            })
            .ok_or_else(|| anyhow!("{} has no upsampled input", describe(l)))?;
        let (ul, uc) = self.expect_layer(
            Scope::Outer,
            &c.inputs[up],
            &["UpSampling2D"],
            1,
            "the decoder's upsampling",
        )?;
        if cfg_pair(ul, "size") != Some((2, 2))
            || cfg_str(ul, "interpolation").unwrap_or("nearest") != "nearest"
        {
            bail!("{} is not a 2x nearest-neighbour upsampling", describe(ul));
        }
        check_channels_last(ul)?;
        self.abs_difference(&c.inputs[1 - up], level)?;
        let diff_w = spec_of(&self.specs, &format!("enc.conv{}.weight", level + 1)).file_shape[0];
        let total =
            spec_of(&self.specs, &format!("{}.weight", self.plan[consumer].spec)).file_shape[1];
        let widths = if up == 0 {
            [total - diff_w, diff_w]
        } else {
            [diff_w, total - diff_w]
        };
        let slots = if up == 0 { [0, 1] } else { [1, 0] };
        self.set_input_order(consumer, Self::concat_order(&widths, &slots));
        Ok(uc.inputs[0].clone())
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

    /// The nested encoder: conv0, then four conv-lrelu-BN stages with pooling between them,
    /// whose outputs are the encoder's four outputs in order.
    fn match_encoder(&mut self) -> Result<()> {
        let g = self.graph(Scope::Encoder);
        if g.inputs.len() != 1 || g.outputs.len() != 4 {
            bail!(
                "the encoder has {} inputs and {} outputs, ASNA's has one and four",
                g.inputs.len(),
                g.outputs.len()
            );
        }
        for level in (0..4).rev() {
            let (input, _) = self.conv_block(
                Scope::Encoder,
                &g.outputs[level],
                &format!("enc.conv{}", level + 1),
                Some(&format!("enc.bn{}", level + 1)),
                1,
                Act::Leaky,
            )?;
            if level > 0 {
                let (l, c) = self.expect_layer(
                    Scope::Encoder,
                    &input,
                    &["MaxPooling2D"],
                    1,
                    &format!("the pooling before enc.conv{}", level + 1),
                )?;
                check_pool(l)?;
                if c.inputs[0] != g.outputs[level - 1] {
                    bail!(
                        "the encoder's stage {} does not read output {}",
                        level + 1,
                        level
                    );
                }
            } else {
                let (start, conv0) =
                    self.conv_block(Scope::Encoder, &input, "enc.conv0", None, 1, Act::Linear)?;
                if start != g.inputs[0] {
                    bail!("the encoder's first convolution does not read its input");
                }
                // The authors' images were BGR (OpenCV): asna's RGB input needs the first
                // convolution's input channels turned around.
                self.set_input_order(conv0, vec![2, 1, 0]);
            }
        }
        Ok(())
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
