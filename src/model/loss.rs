//! The ASNA loss on one batch of L = 16 pairs (standardised targets y, predictions p):
//! `m * mse + (1 - m) * (1 - r^2) + s * rank + l2`, with the sorter frozen in evaluation mode
//! (docs/MODEL.md, "Loss").

use super::asna::{l2_conv_layers, BnContext, Bound};
use super::params::ParamStore;
use super::sorter;
use crate::autograd::{Tape, Var};

/// The weights of the loss's terms. `asna train` takes m and s as options, with `Default`'s
/// values as their defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct LossWeights {
    /// m: weight of the MSE term (the Pearson term gets 1 - m)
    #[arg(long = "mse-weight", value_name = "MSE_WEIGHT", default_value_t = LossWeights::default().mse,
          value_parser = |s: &str| crate::train::parse_in_range::<f32>("--mse-weight", s), allow_negative_numbers = true)]
    pub mse: f32,
    /// s: weight of the sorter's ranking term
    #[arg(long = "rank-weight", value_name = "RANK_WEIGHT", default_value_t = LossWeights::default().rank,
          value_parser = |s: &str| crate::train::parse_in_range::<f32>("--rank-weight", s), allow_negative_numbers = true)]
    pub rank: f32,
    #[arg(skip = LossWeights::default().l2_conv)]
    pub l2_conv: f32,
    #[arg(skip = LossWeights::default().l2_dense)]
    pub l2_dense: f32,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            mse: 1.0,
            rank: 0.01,
            l2_conv: 1e-4,
            l2_dense: 1e-6,
        }
    }
}

/// The loss and its parts, each a 1-element value on the GPU.
pub struct LossParts {
    pub total: Var,
    pub mse: Var,
    pub pearson: Var,
    pub rank: Var,
    pub l2: Var,
}

pub fn asna_loss(
    tape: &mut Tape,
    params: &Bound,
    pred: &Var,
    target: &Var,
    sorter: Option<(&ParamStore, &Bound)>,
    w: &LossWeights,
) -> LossParts {
    let mse = tape.mse(pred, target);
    // A term with weight 0 stays out of the graph: 0 * NaN (Pearson of a constant prediction,
    // common at initialisation) would otherwise poison the loss and every gradient. It is
    // still computed for the log.
    let pearson = if w.mse != 1.0 {
        tape.pearson_term(pred, target)
    } else {
        tape.leaf(
            crate::ops::loss::pearson_term(tape.gpu, &pred.t, &target.t),
            false,
        )
    };
    // The ranking term needs the sorter (and batches of its length); with s = 0 it is left out.
    let rank = match sorter {
        Some((store, bound)) if w.rank != 0.0 => {
            let mut frozen = BnContext::eval(store);
            let n = pred.t.numel();
            let p_row = tape.reshape(pred, &[1, n]);
            let t_row = tape.reshape(target, &[1, n]);
            let ranks_p = sorter::forward(tape, bound, &mut frozen, &p_row);
            let ranks_t = sorter::forward(tape, bound, &mut frozen, &t_row);
            tape.mse(&ranks_p, &ranks_t)
        }
        _ => tape.leaf(tape.gpu.zeros(&[1]), false),
    };
    let mut l2: Option<Var> = None;
    for name in l2_conv_layers() {
        let term = tape.sum_squares(params.var(&format!("{name}.weight")), w.l2_conv);
        l2 = Some(match l2 {
            Some(acc) => tape.add(&acc, &term),
            None => term,
        });
    }
    let dense = tape.sum_squares(params.var("head.fc1.weight"), w.l2_dense);
    let l2 = tape.add(&l2.expect("L2 layers"), &dense);
    let mut total = if w.mse != 1.0 {
        tape.axpby(w.mse, &mse, 1.0 - w.mse, &pearson)
    } else {
        mse.clone()
    };
    if w.rank != 0.0 {
        total = tape.axpby(1.0, &total, w.rank, &rank);
    }
    let total = tape.add(&total, &l2);
    LossParts {
        total,
        mse,
        pearson,
        rank,
        l2,
    }
}
