//! The ASNA attention model as one table (docs/MODEL.md, "Architecture"): every layer with
//! parameters, its hyper-parameters, its batch norm and the tensor it reads. The parameter list
//! (`asna::specs`), the forward pass (`asna::forward`) and the Keras importer's matcher
//! (`import::keras_match`) all read it, so a change to the model is made here once.
//!
//! Shapes are per image: the network reads `SIZE` x `SIZE` x 3 images, and every convolution
//! pads as TensorFlow's `'same'`, so a layer's side is `ceil(input side / stride)`.

use crate::ops::Act;
use Input::*;

/// Side of the images the network reads.
pub const SIZE: usize = 288;
/// Channels of the input images (RGB).
const IMAGE_CHANNELS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// A square convolution with a bias.
    Conv,
    /// A dense layer with a bias, on a flattened vector.
    Dense,
}

/// The tensor a layer reads, as an expression over the images and earlier layers' outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The stacked batch [references; distorted images].
    Images,
    /// A layer's output: after its activation, and after its batch norm if it has one.
    Out(&'static str),
    /// 2x2 max pooling of stride 2.
    Pool(&'static Input),
    /// 2x nearest-neighbour upsampling.
    Up(&'static Input),
    /// The distorted images' half of a stacked-batch tensor.
    Distorted(&'static Input),
    /// `|references' half - distorted half|` of a stacked-batch tensor: the Siamese difference.
    AbsDiff(&'static Input),
    /// The mean over positions, one vector per image.
    MeanHw(&'static Input),
    /// Element-wise product; the second factor is broadcast over positions when it has one.
    Mul(&'static Input, &'static Input),
    /// Element-wise sum.
    Add(&'static Input, &'static Input),
    /// Concatenation along channels, in this order.
    Concat(&'static [Input]),
    /// Each image's tensor as one vector in (h, w, c) order.
    Flatten(&'static Input),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The parameter prefix: `{name}.weight` and `{name}.bias`.
    pub name: &'static str,
    pub kind: LayerKind,
    /// Kernel side (1 for dense layers).
    pub kernel: usize,
    pub stride: usize,
    /// Output channels (a dense layer's units); input channels follow from `input`.
    pub channels: usize,
    /// Applied to `conv(x) + bias`.
    pub act: Act,
    /// The batch norm applied after the activation, by parameter prefix.
    pub bn: Option<&'static str>,
    pub input: Input,
}

const fn conv(
    name: &'static str,
    kernel: usize,
    stride: usize,
    channels: usize,
    act: Act,
    bn: Option<&'static str>,
    input: Input,
) -> Layer {
    Layer {
        name,
        kind: LayerKind::Conv,
        kernel,
        stride,
        channels,
        act,
        bn,
        input,
    }
}

const fn dense(name: &'static str, units: usize, act: Act, input: Input) -> Layer {
    Layer {
        name,
        kind: LayerKind::Dense,
        kernel: 1,
        stride: 1,
        channels: units,
        act,
        bn: None,
        input,
    }
}

const LINEAR: Act = Act::None;
const LEAKY: Act = Act::LeakyRelu;
const RELU: Act = Act::Relu;
const SIGMOID: Act = Act::Sigmoid;
const TANH: Act = Act::Tanh;

/// The shared encoder, run once on the stacked batch so that both images see one set of
/// weights.
#[rustfmt::skip]
pub const ENCODER: [Layer; 5] = [
    //   name         kernel stride channels act     batch norm        input
    conv("enc.conv0", 5, 1, 3,  LINEAR, None,             Images),
    conv("enc.conv1", 5, 1, 8,  LEAKY,  Some("enc.bn1"),  Out("enc.conv0")),
    conv("enc.conv2", 5, 1, 16, LEAKY,  Some("enc.bn2"),  Pool(&Out("enc.conv1"))),
    conv("enc.conv3", 3, 1, 32, LEAKY,  Some("enc.bn3"),  Pool(&Out("enc.conv2"))),
    conv("enc.conv4", 3, 1, 64, LEAKY,  Some("enc.bn4"),  Pool(&Out("enc.conv3"))),
];

/// The encoder outputs whose Siamese differences the decoder takes in, finest scale first.
pub const FEATURES: [&str; 4] = ["enc.conv1", "enc.conv2", "enc.conv3", "enc.conv4"];

/// The decoder: a context branch from the distorted image's deepest features climbs back to
/// full resolution taking in each scale's difference, then two strided convolutions.
#[rustfmt::skip]
pub const DECODER: [Layer; 6] = [
    conv("dec.conv0", 3, 1, 64, LEAKY, Some("dec.bn0"),      Pool(&Distorted(&Out("enc.conv4")))),
    conv("dec.conv1", 3, 1, 64, LEAKY, Some("dec.bn1"),      Concat(&[Up(&Out("dec.conv0")), AbsDiff(&Out("enc.conv4"))])),
    conv("dec.conv2", 3, 1, 32, LEAKY, Some("dec.bn2"),      Concat(&[Up(&Out("dec.conv1")), AbsDiff(&Out("enc.conv3"))])),
    conv("dec.conv3", 3, 1, 16, LEAKY, Some("dec.bn3"),      Concat(&[Up(&Out("dec.conv2")), AbsDiff(&Out("enc.conv2"))])),
    conv("dec.down0", 3, 4, 32, LEAKY, Some("dec.down_bn0"), Concat(&[Up(&Out("dec.conv3")), AbsDiff(&Out("enc.conv1"))])),
    conv("dec.down1", 3, 2, 32, LEAKY, Some("dec.down_bn1"), Out("dec.down0")),
];

/// Channel and spatial attention on the decoder's output.
#[rustfmt::skip]
pub const ATTENTION: [Layer; 7] = [
    conv("att.conv1", 3, 1, 8, RELU,    Some("att.bn"), Out("dec.down1")),
    conv("att.conv2", 3, 1, 8, LINEAR,  None,           Out("att.conv1")),
    conv("att.ch1",   1, 1, 8, RELU,    None,           MeanHw(&Out("att.conv2"))),
    conv("att.ch2",   1, 1, 8, SIGMOID, None,           Out("att.ch1")),
    conv("att.sp1",   1, 1, 8, RELU,    None,           Out("att.conv2")),
    conv("att.sp2",   1, 1, 8, SIGMOID, None,           Out("att.sp1")),
    conv("att.out",   1, 1, 8, LINEAR,  None,           Concat(&[
        Out("dec.down1"),
        Mul(&Out("att.conv2"), &Out("att.ch2")),
        Mul(&Out("att.conv2"), &Out("att.sp2")),
    ])),
];

/// The residual stream: the attention output plus each residual block's branch.
const RESIDUAL_0: Input = Out("att.out");
const RESIDUAL_1: Input = Add(&RESIDUAL_0, &Out("res0.conv2"));
const RESIDUAL_2: Input = Add(&RESIDUAL_1, &Out("res1.conv2"));
const RESIDUAL_3: Input = Add(&RESIDUAL_2, &Out("res2.conv2"));

/// Three residual blocks `h + conv(relu(conv(h)))`, without batch norm.
#[rustfmt::skip]
pub const RESIDUAL: [Layer; 6] = [
    conv("res0.conv1", 3, 1, 8, RELU,   None, RESIDUAL_0),
    conv("res0.conv2", 3, 1, 8, LINEAR, None, Out("res0.conv1")),
    conv("res1.conv1", 3, 1, 8, RELU,   None, RESIDUAL_1),
    conv("res1.conv2", 3, 1, 8, LINEAR, None, Out("res1.conv1")),
    conv("res2.conv1", 3, 1, 8, RELU,   None, RESIDUAL_2),
    conv("res2.conv2", 3, 1, 8, LINEAR, None, Out("res2.conv1")),
];

/// The dense head; its last layer's output is the score.
#[rustfmt::skip]
pub const HEAD: [Layer; 3] = [
    //    name        units act     input
    dense("head.fc1", 32,   RELU,   Flatten(&RESIDUAL_3)),
    dense("head.fc2", 1,    TANH,   Out("head.fc1")),
    dense("head.fc3", 1,    LINEAR, Out("head.fc2")),
];

/// The layer whose output is the model's one score per pair.
pub const SCORE: &str = "head.fc3";

/// Every layer, in the order of the forward pass.
pub fn all() -> impl Iterator<Item = &'static Layer> {
    [&ENCODER[..], &DECODER, &ATTENTION, &RESIDUAL, &HEAD]
        .into_iter()
        .flatten()
}

/// The layer of parameter prefix `name`.
pub fn layer(name: &str) -> &'static Layer {
    all()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("the model has no layer {name}"))
}

/// The scale (index into `FEATURES`) of an encoder output.
pub fn scale_of(name: &str) -> usize {
    FEATURES
        .iter()
        .position(|&f| f == name)
        .unwrap_or_else(|| panic!("{name} is not an encoder output"))
}

/// (side, channels) of one image's `input`.
pub fn shape(input: &Input) -> (usize, usize) {
    match input {
        Images => (SIZE, IMAGE_CHANNELS),
        Out(name) => output_shape(layer(name)),
        Pool(x) => {
            let (side, c) = shape(x);
            (side / 2, c)
        }
        Up(x) => {
            let (side, c) = shape(x);
            (side * 2, c)
        }
        Distorted(x) | AbsDiff(x) | Mul(x, _) | Add(x, _) => shape(x),
        MeanHw(x) => (1, shape(x).1),
        Concat(parts) => {
            let side = shape(&parts[0]).0;
            let channels = parts
                .iter()
                .map(|p| {
                    let (s, c) = shape(p);
                    assert_eq!(s, side, "concatenated tensors of different sides");
                    c
                })
                .sum();
            (side, channels)
        }
        Flatten(x) => {
            let (side, c) = shape(x);
            (1, side * side * c)
        }
    }
}

/// (side, channels) of one image's output of `l`.
pub fn output_shape(l: &Layer) -> (usize, usize) {
    let (side, _) = shape(&l.input);
    (side.div_ceil(l.stride), l.channels)
}

/// Input channels of `l` (the length of a dense layer's input vector).
pub fn input_channels(l: &Layer) -> usize {
    shape(&l.input).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_names_an_earlier_layer() {
        fn names(input: &Input, out: &mut Vec<&'static str>) {
            match input {
                Images => {}
                Out(n) => out.push(n),
                Pool(x) | Up(x) | Distorted(x) | AbsDiff(x) | MeanHw(x) | Flatten(x) => {
                    names(x, out)
                }
                Mul(a, b) | Add(a, b) => {
                    names(a, out);
                    names(b, out);
                }
                Concat(parts) => parts.iter().for_each(|p| names(p, out)),
            }
        }
        let order: Vec<&str> = all().map(|l| l.name).collect();
        for (i, l) in all().enumerate() {
            let mut read = Vec::new();
            names(&l.input, &mut read);
            for n in read {
                let at = order.iter().position(|&o| o == n);
                assert!(at.is_some_and(|at| at < i), "{} reads {n}", l.name);
            }
        }
    }

    #[test]
    fn shapes_follow_the_description() {
        assert_eq!(input_channels(layer("dec.conv1")), 128);
        assert_eq!(input_channels(layer("dec.down0")), 24);
        assert_eq!(output_shape(layer("dec.down0")), (72, 32));
        assert_eq!(output_shape(layer("dec.down1")), (36, 32));
        assert_eq!(input_channels(layer("att.out")), 48);
        assert_eq!(input_channels(layer("head.fc1")), 36 * 36 * 8);
        assert_eq!(output_shape(layer(SCORE)), (1, 1));
    }
}
