//! The surrogate ranking network ("sorter"): a conv1d stack that maps a vector of L = 16
//! scores to approximate 1-based ranks, trained to sort and then frozen inside the ASNA loss
//! as a differentiable stand-in for Spearman's correlation (docs/MODEL.md, "The surrogate
//! ranking network").

use super::asna::{BnContext, Bound};
use super::params::SpecList;
use crate::autograd::{Tape, Var};

pub const LENGTH: usize = 16;
/// (in, out, kernel, batch norm) of each conv1d layer; every layer ends in a PReLU.
pub const LAYERS: [(usize, usize, usize, bool); 7] = [
    (1, 8, 2, false),
    (8, 16, 3, true),
    (16, 32, 5, true),
    (32, 64, 7, true),
    (64, 96, 10, false),
    (96, 128, 7, true),
    (128, 256, 7, true),
];
pub const ARCHITECTURE: &str = "asna-sorter";

pub fn specs() -> SpecList {
    let mut s = SpecList::default();
    for (i, (ci, co, k, has_bn)) in LAYERS.iter().enumerate() {
        s.conv1d(&format!("sorter.conv{i}"), *ci, *co, *k);
        if *has_bn {
            s.bn(&format!("sorter.bn{i}"), *co);
        }
        s.vector(&format!("sorter.prelu{i}.alpha"), *co, 0.0);
    }
    s.dense("sorter.fc", LENGTH * 256, LENGTH);
    s
}

/// Approximate ranks [B, L] of score vectors v [B, L].
pub fn forward(tape: &mut Tape, p: &Bound, bn: &mut BnContext, v: &Var) -> Var {
    let b = v.shape()[0];
    let l = v.t.numel() / b;
    // Each vector is a one-row image of L positions with one channel.
    let mut x = tape.reshape(v, &[b, 1, l, 1]);
    for (i, (_, _, _, has_bn)) in LAYERS.iter().enumerate() {
        x = tape.conv(
            &x,
            p.var(&format!("sorter.conv{i}.weight")),
            Some(p.var(&format!("sorter.conv{i}.bias"))),
            1,
            crate::ops::Act::None,
        );
        if *has_bn {
            x = bn.apply(tape, p, &format!("sorter.bn{i}"), &x);
        }
        x = tape.prelu(&x, p.var(&format!("sorter.prelu{i}.alpha")));
    }
    // (position, channel) flatten, then the dense layer.
    let c = x.t.channels();
    let f = tape.reshape(&x, &[b, 1, 1, l * c]);
    let y = tape.conv(
        &f,
        p.var("sorter.fc.weight"),
        Some(p.var("sorter.fc.bias")),
        1,
        crate::ops::Act::None,
    );
    tape.reshape(&y, &[b, l])
}
