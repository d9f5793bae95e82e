//! Reverse-mode differentiation on the GPU.
//!
//! A `Tape` records each op with what its backward needs (saved tensors, shapes); `backward`
//! walks the records in reverse, launches the backward kernels through `ops`, and accumulates
//! gradients where a value is used more than once (the shared encoder sees both images,
//! residual blocks fan out, weights also enter the L2 term). With recording off the same model
//! code runs forward only and every intermediate is released as soon as it is dead.
//! All gradient rules sit in one `match` (`node_backward`); tests/ops/ reaches each of them
//! through the tape, in the file of the op family whose kernels the rule launches.

use crate::gpu::{Gpu, Tensor};
use crate::ops::{self, batchnorm::BatchStats, conv::ConvGeom, Act};
use std::collections::HashMap;

/// A value in a computation: its tensor, and whether gradients flow to it.
#[derive(Clone, Debug)]
pub struct Var {
    pub id: usize,
    pub t: Tensor,
    pub requires_grad: bool,
}

impl Var {
    pub fn shape(&self) -> &[usize] {
        &self.t.shape
    }
}

enum Op {
    Conv {
        x: Var,
        w: Var,
        b: Option<Var>,
        y: Tensor,
        act: Act,
        geom: ConvGeom,
    },
    Activation {
        x: Var,
        y: Tensor,
        act: Act,
    },
    BatchNormTrain {
        x: Var,
        gamma: Var,
        beta: Var,
        stats: BatchStats,
    },
    BatchNormEval {
        x: Var,
        gamma: Var,
        beta: Var,
        running_mean: Tensor,
        running_var: Tensor,
    },
    MaxPool {
        x: Var,
    },
    Upsample {
        x: Var,
    },
    Concat {
        parts: Vec<Var>,
    },
    AbsDiffHalves {
        x: Var,
    },
    SliceBatch {
        x: Var,
        start: usize,
    },
    Mul {
        a: Var,
        b: Var,
    },
    Axpby {
        a: Var,
        alpha: f32,
        b: Var,
        beta: f32,
    },
    Prelu {
        x: Var,
        alpha: Var,
    },
    MeanHw {
        x: Var,
    },
    Reshape {
        x: Var,
    },
    Mse {
        a: Var,
        b: Var,
    },
    Mae {
        a: Var,
        b: Var,
    },
    PearsonTerm {
        a: Var,
        b: Var,
    },
    SumSquares {
        x: Var,
        scale: f32,
    },
}

struct Node {
    op: Op,
    out: usize,
}

pub struct Tape<'g> {
    pub gpu: &'g Gpu,
    recording: bool,
    next_id: usize,
    nodes: Vec<Node>,
    grads: HashMap<usize, Tensor>,
}

impl<'g> Tape<'g> {
    /// A tape that records for `backward`.
    pub fn new(gpu: &'g Gpu) -> Self {
        Tape {
            gpu,
            recording: true,
            next_id: 0,
            nodes: Vec::new(),
            grads: HashMap::new(),
        }
    }

    /// Forward only: nothing is kept, so memory is that of the live values alone.
    pub fn inference(gpu: &'g Gpu) -> Self {
        Tape {
            recording: false,
            ..Tape::new(gpu)
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// A leaf value; `requires_grad` for trainable parameters.
    pub fn leaf(&mut self, t: Tensor, requires_grad: bool) -> Var {
        let id = self.next_id;
        self.next_id += 1;
        Var {
            id,
            t,
            requires_grad: requires_grad && self.recording,
        }
    }

    fn push(&mut self, t: Tensor, inputs: &[&Var], op: impl FnOnce() -> Op) -> Var {
        let requires_grad = self.recording && inputs.iter().any(|v| v.requires_grad);
        let v = self.leaf(t, false);
        let v = Var { requires_grad, ..v };
        if requires_grad {
            self.nodes.push(Node {
                op: op(),
                out: v.id,
            });
        }
        v
    }

    // ------------------------------------------------------------------ forward ops

    /// act(conv(x, w) + b), TF-'same' padding; w is [kh, kw, in, out].
    pub fn conv(&mut self, x: &Var, w: &Var, b: Option<&Var>, stride: usize, act: Act) -> Var {
        let b_t = b.map(|b| &b.t);
        let y = if self.recording {
            ops::conv::forward_for_gradient(self.gpu, &x.t, &w.t, b_t, stride, act)
        } else {
            ops::conv::forward(self.gpu, &x.t, &w.t, b_t, stride, act)
        };
        let geom = ConvGeom::new(&x.t.shape, &w.t.shape, stride);
        let mut inputs = vec![x, w];
        if let Some(b) = b {
            inputs.push(b);
        }
        let saved = y.clone();
        self.push(y, &inputs, || Op::Conv {
            x: x.clone(),
            w: w.clone(),
            b: b.cloned(),
            y: saved,
            act,
            geom,
        })
    }

    /// Evaluation-mode BN(act(conv(x, w) + b)) in one kernel, forward only (the tape must not
    /// be recording). ASNA normalises after the activation, so the norm cannot be folded
    /// into w and b (act does not commute with an affine map); it is applied as a
    /// per-channel scale and shift in the convolution's epilogue instead.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn_eval(
        &mut self,
        x: &Var,
        w: &Var,
        b: Option<&Var>,
        stride: usize,
        act: Act,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
    ) -> Var {
        assert!(
            !self.recording,
            "conv_bn_eval has no gradient; use conv and batch_norm_eval on a recording tape"
        );
        let affine = ops::batchnorm::fold(self.gpu, &gamma.t, &beta.t, running_mean, running_var);
        let y = ops::conv::forward_affine(
            self.gpu,
            &x.t,
            &w.t,
            b.map(|b| &b.t),
            stride,
            act,
            Some(&affine),
        );
        self.leaf(y, false)
    }

    /// `conv_bn_eval` of concat[up(low), |f(R) - f(D)|] without building the concatenation,
    /// where a kernel reads it from its sources (`ops::conv::UpAbsdiffConv`);
    /// None where none does.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn_eval_up_absdiff(
        &mut self,
        low: &Var,
        feats: &Var,
        w: &Var,
        b: Option<&Var>,
        stride: usize,
        act: Act,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
    ) -> Option<Var> {
        assert!(
            !self.recording,
            "conv_bn_eval_up_absdiff has no gradient; record upsample, absdiff_halves and concat"
        );
        let conv = ops::conv::UpAbsdiffConv::plan(self.gpu, &low.t, &feats.t, &w.t, stride)?;
        let affine = ops::batchnorm::fold(self.gpu, &gamma.t, &beta.t, running_mean, running_var);
        let y = conv.forward(
            self.gpu,
            &low.t,
            &feats.t,
            &w.t,
            b.map(|b| &b.t),
            act,
            Some(&affine),
        );
        Some(self.leaf(y, false))
    }

    pub fn activation(&mut self, x: &Var, act: Act) -> Var {
        let y = ops::eltwise::activation(self.gpu, &x.t, act);
        let saved = y.clone();
        self.push(y, &[x], || Op::Activation {
            x: x.clone(),
            y: saved,
            act,
        })
    }

    /// Training-mode batch norm; returns the output and the batch statistics (for the
    /// running-statistics update).
    pub fn batch_norm_train(&mut self, x: &Var, gamma: &Var, beta: &Var) -> (Var, BatchStats) {
        let stats = ops::batchnorm::batch_stats(self.gpu, &x.t);
        let y =
            ops::batchnorm::normalize(self.gpu, &x.t, &stats.mean, &stats.var, &gamma.t, &beta.t);
        let kept = BatchStats {
            mean: stats.mean.clone(),
            var: stats.var.clone(),
        };
        let out = self.push(y, &[x, gamma, beta], || Op::BatchNormTrain {
            x: x.clone(),
            gamma: gamma.clone(),
            beta: beta.clone(),
            stats: kept,
        });
        (out, stats)
    }

    pub fn batch_norm_eval(
        &mut self,
        x: &Var,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
    ) -> Var {
        let y =
            ops::batchnorm::normalize(self.gpu, &x.t, running_mean, running_var, &gamma.t, &beta.t);
        self.push(y, &[x, gamma, beta], || Op::BatchNormEval {
            x: x.clone(),
            gamma: gamma.clone(),
            beta: beta.clone(),
            running_mean: running_mean.clone(),
            running_var: running_var.clone(),
        })
    }

    pub fn maxpool(&mut self, x: &Var) -> Var {
        let y = ops::pool::maxpool(self.gpu, &x.t);
        self.push(y, &[x], || Op::MaxPool { x: x.clone() })
    }

    pub fn upsample(&mut self, x: &Var) -> Var {
        let y = ops::pool::upsample(self.gpu, &x.t);
        self.push(y, &[x], || Op::Upsample { x: x.clone() })
    }

    pub fn concat(&mut self, parts: &[&Var]) -> Var {
        let tensors: Vec<&Tensor> = parts.iter().map(|v| &v.t).collect();
        let y = ops::concat::concat(self.gpu, &tensors);
        self.push(y, parts, || Op::Concat {
            parts: parts.iter().map(|v| (*v).clone()).collect(),
        })
    }

    /// `|x[:N] - x[N:]|` of a stacked `[R; D]` batch.
    pub fn absdiff_halves(&mut self, x: &Var) -> Var {
        let y = ops::eltwise::absdiff_halves(self.gpu, &x.t);
        self.push(y, &[x], || Op::AbsDiffHalves { x: x.clone() })
    }

    /// concat(upsample(low), absdiff_halves(feats)) in one pass: scoring only (no gradient).
    pub fn upsample_absdiff_concat(&mut self, low: &Var, feats: &Var) -> Var {
        assert!(
            !self.recording,
            "upsample_absdiff_concat is forward only; record upsample, absdiff_halves and concat"
        );
        let y = ops::concat::upsample_absdiff_concat(self.gpu, &low.t, &feats.t);
        self.leaf(y, false)
    }

    pub fn slice_batch(&mut self, x: &Var, start: usize, count: usize) -> Var {
        let y = ops::eltwise::slice_batch(self.gpu, &x.t, start, count);
        self.push(y, &[x], || Op::SliceBatch {
            x: x.clone(),
            start,
        })
    }

    /// a * b, b of a's shape or [N, 1, 1, C].
    pub fn mul(&mut self, a: &Var, b: &Var) -> Var {
        let y = ops::eltwise::mul(self.gpu, &a.t, &b.t);
        self.push(y, &[a, b], || Op::Mul {
            a: a.clone(),
            b: b.clone(),
        })
    }

    pub fn axpby(&mut self, alpha: f32, a: &Var, beta: f32, b: &Var) -> Var {
        let y = ops::eltwise::axpby(self.gpu, alpha, &a.t, beta, &b.t);
        self.push(y, &[a, b], || Op::Axpby {
            a: a.clone(),
            alpha,
            b: b.clone(),
            beta,
        })
    }

    pub fn add(&mut self, a: &Var, b: &Var) -> Var {
        self.axpby(1.0, a, 1.0, b)
    }

    pub fn prelu(&mut self, x: &Var, alpha: &Var) -> Var {
        let y = ops::eltwise::prelu(self.gpu, &x.t, &alpha.t);
        self.push(y, &[x, alpha], || Op::Prelu {
            x: x.clone(),
            alpha: alpha.clone(),
        })
    }

    /// Mean over H x W: [N, H, W, C] -> [N, 1, 1, C].
    pub fn mean_hw(&mut self, x: &Var) -> Var {
        let (n, h, w, c) = x.t.nhwc();
        let y = ops::reduce::columns(
            self.gpu,
            &x.t.reshape(&[n, h * w, c]),
            ops::reduce::Summand::Value,
            None,
            None,
            1.0 / (h * w) as f32,
        )
        .reshape(&[n, 1, 1, c]);
        self.push(y, &[x], || Op::MeanHw { x: x.clone() })
    }

    pub fn reshape(&mut self, x: &Var, shape: &[usize]) -> Var {
        let y = x.t.reshape(shape);
        self.push(y, &[x], || Op::Reshape { x: x.clone() })
    }

    pub fn mse(&mut self, a: &Var, b: &Var) -> Var {
        let y = ops::loss::mse(self.gpu, &a.t, &b.t);
        self.push(y, &[a, b], || Op::Mse {
            a: a.clone(),
            b: b.clone(),
        })
    }

    /// mean(|a - b|); b must be a constant.
    pub fn mae(&mut self, a: &Var, b: &Var) -> Var {
        assert!(!b.requires_grad, "mae: the target must be a constant");
        let y = ops::loss::mae(self.gpu, &a.t, &b.t);
        self.push(y, &[a, b], || Op::Mae {
            a: a.clone(),
            b: b.clone(),
        })
    }

    /// 1 - clamp(pearson(a, b), -1, 1)^2; b must be a constant.
    pub fn pearson_term(&mut self, a: &Var, b: &Var) -> Var {
        assert!(
            !b.requires_grad,
            "pearson_term: the target must be a constant"
        );
        let y = ops::loss::pearson_term(self.gpu, &a.t, &b.t);
        self.push(y, &[a, b], || Op::PearsonTerm {
            a: a.clone(),
            b: b.clone(),
        })
    }

    /// scale * sum(x^2) as a 1-element value.
    pub fn sum_squares(&mut self, x: &Var, scale: f32) -> Var {
        let s = ops::reduce::total(self.gpu, &x.t, ops::reduce::Summand::Square);
        let y = if scale == 1.0 {
            s
        } else {
            ops::eltwise::scale(self.gpu, &s, scale)
        };
        self.push(y, &[x], || Op::SumSquares {
            x: x.clone(),
            scale,
        })
    }

    // ------------------------------------------------------------------ backward

    /// Gradients of the 1-element value `root` with respect to every value that requires them.
    pub fn backward(&mut self, root: &Var) {
        assert_eq!(root.t.numel(), 1, "backward needs a scalar root");
        let one = self.gpu.full(&[1], 1.0);
        self.backward_from(root, one);
    }

    /// Gradients of sum(out * dy) for a value `out` of any shape and a constant `dy` of as
    /// many elements: the vector-Jacobian product, which checks each rule on its own.
    pub fn backward_from(&mut self, out: &Var, dy: Tensor) {
        assert_eq!(
            dy.numel(),
            out.t.numel(),
            "backward_from: dy has {} elements for a value of shape {:?}",
            dy.numel(),
            out.t.shape
        );
        let gpu = self.gpu;
        self.grads.clear();
        self.grads.insert(out.id, dy);
        let nodes = std::mem::take(&mut self.nodes);
        for node in nodes.into_iter().rev() {
            let Some(dy) = self.grads.remove(&node.out) else {
                continue;
            };
            let grads = node_backward(gpu, node.op, &dy);
            for (v, g) in grads {
                if v.requires_grad {
                    self.accumulate(&v, g);
                }
            }
        }
    }

    fn accumulate(&mut self, v: &Var, g: Tensor) {
        debug_assert_eq!(g.numel(), v.t.numel(), "gradient shape for {:?}", v.t.shape);
        let g = g.reshape(&v.t.shape);
        let merged = match self.grads.remove(&v.id) {
            Some(prev) => ops::eltwise::add(self.gpu, &prev, &g),
            None => g,
        };
        self.grads.insert(v.id, merged);
    }

    /// The gradient of a leaf after `backward` (None if nothing flowed to it).
    pub fn grad(&self, v: &Var) -> Option<&Tensor> {
        self.grads.get(&v.id)
    }

    /// Removes and returns a leaf's gradient.
    pub fn take_grad(&mut self, v: &Var) -> Option<Tensor> {
        self.grads.remove(&v.id)
    }
}

/// One op's gradient rule: the gradients of its inputs from the gradient of its output.
fn node_backward(gpu: &Gpu, op: Op, dy: &Tensor) -> Vec<(Var, Tensor)> {
    use ops::{batchnorm, concat, conv, eltwise, loss, pool};
    match op {
        Op::Conv {
            x,
            w,
            b,
            y,
            act,
            geom,
        } => {
            let dz = eltwise::activation_backward(gpu, &y, dy, act);
            let mut out = Vec::new();
            if x.requires_grad {
                out.push((x.clone(), conv::backward_input(gpu, &dz, &w.t, &geom)));
            }
            if w.requires_grad {
                out.push((w.clone(), conv::backward_weight(gpu, &x.t, &dz, &geom)));
            }
            if let Some(b) = b.filter(|b| b.requires_grad) {
                out.push((b, conv::backward_bias(gpu, &dz)));
            }
            out
        }
        Op::Activation { x, y, act } => vec![(x, eltwise::activation_backward(gpu, &y, dy, act))],
        Op::BatchNormTrain {
            x,
            gamma,
            beta,
            stats,
        } => {
            let (dx, dgamma, dbeta) = batchnorm::backward(gpu, &x.t, dy, &stats, &gamma.t);
            vec![(x, dx), (gamma, dgamma), (beta, dbeta)]
        }
        Op::BatchNormEval {
            x,
            gamma,
            beta,
            running_mean,
            running_var,
        } => {
            let mut out = Vec::new();
            if x.requires_grad {
                let dx = batchnorm::backward_eval(gpu, &x.t, dy, &running_var, &gamma.t);
                out.push((x.clone(), dx));
            }
            if gamma.requires_grad || beta.requires_grad {
                let stats = BatchStats {
                    mean: running_mean,
                    var: running_var,
                };
                let (dgamma, dbeta) = batchnorm::param_backward(gpu, &x.t, dy, &stats, &gamma.t);
                out.push((gamma, dgamma));
                out.push((beta, dbeta));
            }
            out
        }
        Op::MaxPool { x } => {
            let dx = pool::maxpool_backward(gpu, &x.t, dy);
            vec![(x, dx)]
        }
        Op::Upsample { x } => vec![(x, pool::upsample_backward(gpu, dy))],
        Op::Concat { parts } => {
            let channels: Vec<usize> = parts.iter().map(|p| p.t.channels()).collect();
            parts
                .into_iter()
                .zip(concat::split(gpu, dy, &channels))
                .collect()
        }
        Op::AbsDiffHalves { x } => {
            let dx = eltwise::absdiff_halves_backward(gpu, &x.t, dy);
            vec![(x, dx)]
        }
        Op::SliceBatch { x, start } => {
            let dx = eltwise::unslice_batch(gpu, dy, &x.t.shape, start);
            vec![(x, dx)]
        }
        Op::Mul { a, b } => {
            let (da, db) = eltwise::mul_backward(gpu, &a.t, &b.t, dy);
            vec![(a, da), (b, db)]
        }
        Op::Axpby { a, alpha, b, beta } => {
            let mut out = Vec::new();
            if a.requires_grad {
                out.push((
                    a,
                    if alpha == 1.0 {
                        dy.clone()
                    } else {
                        eltwise::scale(gpu, dy, alpha)
                    },
                ));
            }
            if b.requires_grad {
                out.push((
                    b,
                    if beta == 1.0 {
                        dy.clone()
                    } else {
                        eltwise::scale(gpu, dy, beta)
                    },
                ));
            }
            out
        }
        Op::Prelu { x, alpha } => {
            let (dx, dalpha) = eltwise::prelu_backward(gpu, &x.t, &alpha.t, dy);
            vec![(x, dx), (alpha, dalpha)]
        }
        Op::MeanHw { x } => {
            let (_, h, w, _) = x.t.nhwc();
            let spread = gpu.full(&x.t.shape, 1.0 / (h * w) as f32);
            let dx = eltwise::mul(gpu, &spread, dy);
            vec![(x, dx)]
        }
        Op::Reshape { x } => {
            let dx = dy.reshape(&x.t.shape);
            vec![(x, dx)]
        }
        Op::Mse { a, b } => {
            let da = loss::mse_backward(gpu, &a.t, &b.t, dy);
            let mut out = Vec::new();
            if b.requires_grad {
                out.push((b, eltwise::scale(gpu, &da, -1.0)));
            }
            out.push((a, da));
            out
        }
        Op::Mae { a, b } => vec![(a.clone(), loss::mae_backward(gpu, &a.t, &b.t, dy))],
        Op::PearsonTerm { a, b } => {
            vec![(a.clone(), loss::pearson_term_backward(gpu, &a.t, &b.t, dy))]
        }
        Op::SumSquares { x, scale } => {
            let dx = eltwise::scale_by_scalar(gpu, &x.t, 2.0 * scale, dy);
            vec![(x, dx)]
        }
    }
}
