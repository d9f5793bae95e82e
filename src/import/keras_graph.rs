//! The layer graph of a Keras 2 functional model, from the `model_config` JSON that Keras
//! stores with a whole-model HDF5 file: each layer's class, configuration and calls, and for
//! each call the tensors it consumed. Tensors are named as Keras names them, (layer, node,
//! tensor), so the graph can be walked from the outputs back to the inputs.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    pub layer: String,
    pub node: usize,
    pub tensor: usize,
}

impl std::fmt::Display for TensorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node == 0 && self.tensor == 0 {
            write!(f, "\"{}\"", self.layer)
        } else {
            write!(
                f,
                "\"{}\" (call {}, output {})",
                self.layer, self.node, self.tensor
            )
        }
    }
}

/// One call of a layer: its tensor inputs and its keyword arguments (which, for TensorFlow
/// operations recorded as layers, hold the second operand).
#[derive(Debug)]
pub struct Call {
    pub inputs: Vec<TensorRef>,
    pub kwargs: Map<String, Value>,
}

#[derive(Debug)]
pub struct Layer {
    pub class: String,
    pub name: String,
    pub config: Value,
    pub calls: Vec<Call>,
    /// A nested functional model keeps its own first node (input to output) out of the
    /// saved graph, so references to its calls count from 1.
    first_node: usize,
    /// The graph inside a nested functional model.
    pub inner: Option<Box<Graph>>,
}

#[derive(Debug)]
pub struct Graph {
    pub name: String,
    pub layers: Vec<Layer>,
    pub inputs: Vec<TensorRef>,
    pub outputs: Vec<TensorRef>,
}

impl Graph {
    /// Parses the `model_config` JSON of a whole-model file.
    pub fn from_model_config(json: &str) -> Result<Graph> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| anyhow!("model_config is not valid JSON ({e})"))?;
        let class = v.get("class_name").and_then(Value::as_str).unwrap_or("?");
        if !is_functional(class) {
            bail!("the model is a Keras {class}, not the functional two-input ASNA model");
        }
        let config = v
            .get("config")
            .ok_or_else(|| anyhow!("model_config has no \"config\""))?;
        Graph::parse(config)
    }

    fn parse(config: &Value) -> Result<Graph> {
        let name = config
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("model")
            .to_string();
        let layers_json = config
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("model \"{name}\" has no layer list in model_config"))?;
        let mut layers = Vec::with_capacity(layers_json.len());
        for l in layers_json {
            layers.push(parse_layer(l)?);
        }
        let graph = Graph {
            inputs: refs_list(config.get("input_layers"), &name, "input_layers")?,
            outputs: refs_list(config.get("output_layers"), &name, "output_layers")?,
            name,
            layers,
        };
        graph.check_acyclic()?;
        Ok(graph)
    }

    /// Refuses a graph in which a call depends on its own output: every walk from the outputs
    /// towards the inputs then ends. Calls, not layers, are the nodes, since a layer may be
    /// called again on its own earlier output.
    fn check_acyclic(&self) -> Result<()> {
        // Keras names layers uniquely; with two of one name, references would be ambiguous.
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            if index.insert(l.name.as_str(), i).is_some() {
                bail!(
                    "model \"{}\" has two layers named \"{}\" in model_config",
                    self.name,
                    l.name
                );
            }
        }
        // Calls numbered layer by layer: layer i's calls start at first_call[i].
        let mut first_call = Vec::with_capacity(self.layers.len() + 1);
        let mut calls: Vec<(&Layer, &Call)> = Vec::new();
        for l in &self.layers {
            first_call.push(calls.len());
            calls.extend(l.calls.iter().map(|c| (l, c)));
        }
        // The call that produced `t`; None for inputs and references that producer() refuses.
        let call_of = |t: &TensorRef| -> Option<usize> {
            let i = *index.get(t.layer.as_str())?;
            let l = &self.layers[i];
            let c = t.node.checked_sub(l.first_node)?;
            (c < l.calls.len()).then_some(first_call[i] + c)
        };
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            New,
            OnPath,
            Done,
        }
        let mut state = vec![State::New; calls.len()];
        // Depth-first, with an explicit stack: (call, how many of its inputs are done).
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for start in 0..calls.len() {
            if state[start] != State::New {
                continue;
            }
            state[start] = State::OnPath;
            stack.push((start, 0));
            while let Some((call, next)) = stack.last_mut() {
                let (layer, c) = calls[*call];
                let Some(input) = c.inputs.get(*next) else {
                    state[*call] = State::Done;
                    stack.pop();
                    continue;
                };
                *next += 1;
                if let Some(producer) = call_of(input) {
                    match state[producer] {
                        State::New => {
                            state[producer] = State::OnPath;
                            stack.push((producer, 0));
                        }
                        State::OnPath => bail!(
                            "model \"{}\": layer \"{}\" depends on its own output (model_config has a cycle)",
                            self.name,
                            layer.name
                        ),
                        State::Done => {}
                    }
                }
            }
        }
        Ok(())
    }

    pub fn layer(&self, name: &str) -> Result<&Layer> {
        self.layers
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| anyhow!("model_config refers to a layer \"{name}\" it does not define"))
    }

    /// The layer that produced `t` and the call that did, or None for an input layer.
    pub fn producer(&self, t: &TensorRef) -> Result<(&Layer, Option<&Call>)> {
        let layer = self.layer(&t.layer)?;
        if layer.class == "InputLayer" {
            return Ok((layer, None));
        }
        let call = t
            .node
            .checked_sub(layer.first_node)
            .and_then(|i| layer.calls.get(i))
            .ok_or_else(|| {
                anyhow!(
                    "model_config refers to a call {} of layer \"{}\" that it does not record",
                    t.node,
                    t.layer
                )
            })?;
        Ok((layer, Some(call)))
    }
}

pub fn is_functional(class: &str) -> bool {
    matches!(class, "Functional" | "Model")
}

fn parse_layer(l: &Value) -> Result<Layer> {
    let class = l
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("a layer in model_config has no class_name"))?
        .to_string();
    let config = l.get("config").cloned().unwrap_or(Value::Null);
    let name = l
        .get("name")
        .or_else(|| config.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("a {class} layer in model_config has no name"))?
        .to_string();
    let mut calls = Vec::new();
    if let Some(nodes) = l.get("inbound_nodes").and_then(Value::as_array) {
        for node in nodes {
            calls.push(parse_call(node, &name)?);
        }
    }
    let nested = is_functional(&class);
    let inner = if nested {
        Some(Box::new(Graph::parse(&config)?))
    } else {
        None
    };
    Ok(Layer {
        class,
        name,
        config,
        calls,
        first_node: usize::from(nested),
        inner,
    })
}

/// A Keras 2 node: a list of `[layer, node, tensor, kwargs]` entries.
fn parse_call(node: &Value, layer: &str) -> Result<Call> {
    let entries = node.as_array().ok_or_else(|| {
        if node.is_object() {
            anyhow!("model_config is in the Keras 3 format (layer \"{layer}\"); this importer reads Keras 2 (tf.keras) files")
        } else {
            anyhow!("layer \"{layer}\": unreadable inbound node in model_config")
        }
    })?;
    let mut call = Call {
        inputs: Vec::new(),
        kwargs: Map::new(),
    };
    // TensorFlow operations recorded as layers store one bare entry instead of a list.
    let single = [node.clone()];
    let entries = if entries.first().is_some_and(Value::is_string) {
        &single[..]
    } else {
        &entries[..]
    };
    for e in entries {
        call.inputs.push(
            tensor_ref(e)
                .ok_or_else(|| anyhow!("layer \"{layer}\": unreadable input in model_config"))?,
        );
        if let Some(kw) = e.get(3).and_then(Value::as_object) {
            call.kwargs.extend(kw.clone());
        }
    }
    Ok(call)
}

/// `[layer, node, tensor, ...]` as a reference, or None when `v` is not one.
pub fn tensor_ref(v: &Value) -> Option<TensorRef> {
    let a = v.as_array()?;
    Some(TensorRef {
        layer: a.first()?.as_str()?.to_string(),
        node: a.get(1)?.as_u64()? as usize,
        tensor: a.get(2)?.as_u64()? as usize,
    })
}

/// `input_layers` / `output_layers`: a list of references, or a single bare one.
fn refs_list(v: Option<&Value>, model: &str, what: &str) -> Result<Vec<TensorRef>> {
    let v = v.ok_or_else(|| anyhow!("model \"{model}\" has no {what} in model_config"))?;
    if let Some(one) = tensor_ref(v) {
        return Ok(vec![one]);
    }
    v.as_array()
        .and_then(|a| a.iter().map(tensor_ref).collect::<Option<Vec<_>>>())
        .ok_or_else(|| anyhow!("model \"{model}\": unreadable {what} in model_config"))
}
