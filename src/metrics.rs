//! Evaluation metrics for image-quality models, all in `f64` on the CPU.
//!
//! * Correlations between predicted scores and subjective scores (MOS):
//!   [`plcc`] (Pearson), [`srcc`] (Spearman), [`krcc`] (Kendall tau-b),
//!   [`rmse`], plus the 4-parameter logistic mapping used in IQA papers
//!   ([`fit_logistic4`], [`plcc_after_logistic`]) and the bundle
//!   [`correlations`].
//!
//! The PSNR, SSIM, MS-SSIM and GMSD baselines are computed on the GPU (`ops::quality`).
//!
//! # Degenerate inputs
//! The correlation functions never panic on degenerate *data*: fewer than two
//! samples, a constant vector (zero variance) or any non-finite value
//! (NaN/inf) gives `f64::NAN`. They do panic when `x` and `y` have different
//! lengths, which is a programming error rather than a data problem.

/// Pearson linear correlation coefficient (PLCC).
///
/// Returns NaN if `n < 2`, if either vector is constant or if any value is
/// non-finite. The result is clamped to `[-1, 1]`.
///
/// # Panics
/// If `x.len() != y.len()`.
pub fn plcc(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "plcc: length mismatch");
    let n = x.len();
    if n < 2 || !all_finite(x) || !all_finite(y) {
        return f64::NAN;
    }
    let mx = mean(x);
    let my = mean(y);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman rank-order correlation coefficient (SRCC): Pearson correlation of
/// the average ranks ([`rankdata`]), identical to `scipy.stats.spearmanr`.
///
/// NaN for the same degenerate inputs as [`plcc`] (a vector of all-equal
/// values has constant ranks).
///
/// # Panics
/// If `x.len() != y.len()`.
pub fn srcc(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "srcc: length mismatch");
    if x.len() < 2 || !all_finite(x) || !all_finite(y) {
        return f64::NAN;
    }
    plcc(&rankdata(x), &rankdata(y))
}

/// Kendall rank correlation, tau-b (tie-corrected), identical to the default
/// of `scipy.stats.kendalltau`:
/// `tau_b = (C - D) / sqrt((N0 - N1) (N0 - N2))` with `N0 = n(n-1)/2`,
/// `N1`/`N2` the pairs tied in `x`/`y`.
///
/// O(n log n) (Knight's algorithm: sort by (x, y), then count discordant pairs
/// as merge-sort inversions of y). NaN if `n < 2`, if all pairs are tied in
/// either vector (constant vector), or if any value is non-finite.
///
/// # Panics
/// If `x.len() != y.len()`.
pub fn krcc(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "krcc: length mismatch");
    let n = x.len();
    if n < 2 || !all_finite(x) || !all_finite(y) {
        return f64::NAN;
    }
    // Sort indices lexicographically by (x, y).
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]).then(y[i].total_cmp(&y[j])));

    // Pairs tied in x (xtie) and tied in both (ntie).
    let pairs = |t: u64| t * (t.saturating_sub(1)) / 2;
    let (mut xtie, mut ntie) = (0u64, 0u64);
    let (mut run_x, mut run_xy) = (1u64, 1u64);
    for k in 1..n {
        let (a, b) = (idx[k - 1], idx[k]);
        if x[a] == x[b] {
            run_x += 1;
            if y[a] == y[b] {
                run_xy += 1;
            } else {
                ntie += pairs(run_xy);
                run_xy = 1;
            }
        } else {
            xtie += pairs(run_x);
            ntie += pairs(run_xy);
            run_x = 1;
            run_xy = 1;
        }
    }
    xtie += pairs(run_x);
    ntie += pairs(run_xy);

    // Discordant pairs = strict inversions of y in this order.
    let mut ys: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
    let mut buf = vec![0.0; n];
    let dis = merge_count_inversions(&mut ys, &mut buf);

    // ys is now sorted: pairs tied in y.
    let mut ytie = 0u64;
    let mut run_y = 1u64;
    for k in 1..n {
        if ys[k] == ys[k - 1] {
            run_y += 1;
        } else {
            ytie += pairs(run_y);
            run_y = 1;
        }
    }
    ytie += pairs(run_y);

    let tot = pairs(n as u64);
    if tot == xtie || tot == ytie {
        return f64::NAN;
    }
    let con_minus_dis = tot as i128 - xtie as i128 - ytie as i128 + ntie as i128 - 2 * dis as i128;
    let tau = con_minus_dis as f64 / ((tot - xtie) as f64).sqrt() / ((tot - ytie) as f64).sqrt();
    tau.clamp(-1.0, 1.0)
}

/// Bottom-up merge sort of `v` (stable, ascending) returning the number of
/// pairs `i < j` with `v[i] > v[j]` (strictly; equal values are not counted).
fn merge_count_inversions(v: &mut [f64], buf: &mut [f64]) -> u64 {
    let n = v.len();
    let mut inv = 0u64;
    let mut width = 1;
    while width < n {
        let mut lo = 0;
        while lo < n {
            let mid = (lo + width).min(n);
            let hi = (lo + 2 * width).min(n);
            let (mut i, mut j, mut k) = (lo, mid, lo);
            while i < mid && j < hi {
                if v[j] < v[i] {
                    buf[k] = v[j];
                    inv += (mid - i) as u64;
                    j += 1;
                } else {
                    buf[k] = v[i];
                    i += 1;
                }
                k += 1;
            }
            buf[k..k + (mid - i)].copy_from_slice(&v[i..mid]);
            k += mid - i;
            buf[k..k + (hi - j)].copy_from_slice(&v[j..hi]);
            lo = hi;
        }
        v.copy_from_slice(buf);
        width *= 2;
    }
    inv
}

/// Root-mean-square error `sqrt(mean((x - y)^2))`. NaN if empty or if any
/// value is non-finite.
///
/// # Panics
/// If `x.len() != y.len()`.
pub fn rmse(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "rmse: length mismatch");
    if x.is_empty() || !all_finite(x) || !all_finite(y) {
        return f64::NAN;
    }
    let s: f64 = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
    (s / x.len() as f64).sqrt()
}

/// Ranks 1..=n with ties given the mean of the ranks they span, like
/// `scipy.stats.rankdata(method="average")`. If any value is NaN, every rank
/// is NaN (scipy's `nan_policy="propagate"`).
pub fn rankdata(v: &[f64]) -> Vec<f64> {
    let n = v.len();
    if v.iter().any(|a| a.is_nan()) {
        return vec![f64::NAN; n];
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut ranks = vec![0.0; n];
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        // `==` (not total_cmp) so that -0.0 and 0.0 tie, as in scipy.
        while end < n && v[idx[end]] == v[idx[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end, average (start + 1 + end) / 2.
        let r = (start + 1 + end) as f64 / 2.0;
        for &i in &idx[start..end] {
            ranks[i] = r;
        }
        start = end;
    }
    ranks
}

/// The 4-parameter logistic of the VQEG / IQA literature:
/// `f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`.
///
/// `b1` is the upper asymptote for increasing curves, `b2` the lower one; the
/// fit may return `b1 < b2` (a decreasing curve) when predictions and MOS are
/// anti-correlated. A *flat* fit (`b1 == b2`, see [`Logistic4::is_flat`]) is
/// returned for degenerate data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Logistic4 {
    pub b1: f64,
    pub b2: f64,
    pub b3: f64,
    pub b4: f64,
}

impl Logistic4 {
    /// `f(x)`. Well defined for any finite parameters (|b4| is floored at the
    /// smallest positive normal number, so `b4 == 0` gives a step function).
    pub fn eval(&self, x: f64) -> f64 {
        let s = self.b4.abs().max(f64::MIN_POSITIVE);
        (self.b1 - self.b2) / (1.0 + (-(x - self.b3) / s).exp()) + self.b2
    }

    /// True for the constant fit returned on degenerate data.
    pub fn is_flat(&self) -> bool {
        self.b1 == self.b2
    }
}

/// Least-squares fit of [`Logistic4`] mapping predictions `x` to MOS `y`.
///
/// Levenberg–Marquardt (Marquardt's diagonal scaling) on standardised data
/// (`x` and `y` shifted to zero mean and scaled to unit standard deviation,
/// parameters mapped back afterwards), started from the usual guess
/// `b1 = max(y)`, `b2 = min(y)`, `b3 = mean(x)`, `b4 = std(x)/4`. For
/// robustness it also tries the mirrored guess (`b1 = min(y)`, `b2 = max(y)`)
/// and `b4 = std(x)` and keeps the start with the smallest squared error.
///
/// Degenerate data never produce NaN parameters: if `n < 2`, `x` or `y` is
/// constant, or any value is non-finite, the result is the flat fit
/// `b1 = b2 = mean(y)` (mean over the finite `y` values; 0 if there are
/// none), `b3 = mean(x)` (0 if not finite), `b4 = 1`.
///
/// # Panics
/// If `x.len() != y.len()`.
pub fn fit_logistic4(x: &[f64], y: &[f64]) -> Logistic4 {
    assert_eq!(x.len(), y.len(), "fit_logistic4: length mismatch");
    let n = x.len();
    let flat = || {
        let finite_mean = |v: &[f64]| {
            let f: Vec<f64> = v.iter().copied().filter(|a| a.is_finite()).collect();
            if f.is_empty() {
                0.0
            } else {
                mean(&f)
            }
        };
        let m = finite_mean(y);
        Logistic4 {
            b1: m,
            b2: m,
            b3: finite_mean(x),
            b4: 1.0,
        }
    };
    if n < 2 || !all_finite(x) || !all_finite(y) {
        return flat();
    }
    let (mx, sx) = (mean(x), std(x));
    let (my, sy) = (mean(y), std(y));
    if !(sx > 0.0 && sy > 0.0 && sx.is_finite() && sy.is_finite()) {
        return flat();
    }
    let xs: Vec<f64> = x.iter().map(|a| (a - mx) / sx).collect();
    let ys: Vec<f64> = y.iter().map(|a| (a - my) / sy).collect();
    let ymax = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ymin = ys.iter().copied().fold(f64::INFINITY, f64::min);

    let mut best: Option<([f64; 4], f64)> = None;
    for p0 in [
        [ymax, ymin, 0.0, 0.25],
        [ymin, ymax, 0.0, 0.25],
        [ymax, ymin, 0.0, 1.0],
        [ymin, ymax, 0.0, 1.0],
    ] {
        let (p, e) = levenberg_marquardt(&xs, &ys, p0);
        if e.is_finite() && best.is_none_or(|(_, be)| e < be) {
            best = Some((p, e));
        }
    }
    let Some((p, _)) = best else { return flat() };
    let fit = Logistic4 {
        b1: p[0] * sy + my,
        b2: p[1] * sy + my,
        b3: p[2] * sx + mx,
        b4: p[3].abs() * sx,
    };
    if [fit.b1, fit.b2, fit.b3, fit.b4]
        .iter()
        .all(|v| v.is_finite())
    {
        fit
    } else {
        flat()
    }
}

/// Sum of squared residuals of the logistic with parameters `p` (on the
/// standardised data).
fn logistic_sse(x: &[f64], y: &[f64], p: &[f64; 4]) -> f64 {
    let l = Logistic4 {
        b1: p[0],
        b2: p[1],
        b3: p[2],
        b4: p[3],
    };
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (b - l.eval(a)).powi(2))
        .sum()
}

/// Levenberg–Marquardt for the 4-parameter logistic; returns (params, SSE).
#[allow(clippy::needless_range_loop)]
fn levenberg_marquardt(x: &[f64], y: &[f64], mut p: [f64; 4]) -> ([f64; 4], f64) {
    // Floor on |b4| (data are standardised, so this is 1e-6 std(x)).
    const B4_MIN: f64 = 1e-6;
    let mut err = logistic_sse(x, y, &p);
    let mut lambda = 1e-3;
    for _ in 0..500 {
        // Normal equations J^T J and J^T r, with r = y - f(x).
        let mut jtj = [[0.0f64; 4]; 4];
        let mut jtr = [0.0f64; 4];
        let s4 = p[3].abs().max(B4_MIN);
        let sign4 = if p[3] < 0.0 { -1.0 } else { 1.0 };
        for (&xi, &yi) in x.iter().zip(y) {
            let z = (xi - p[2]) / s4;
            let s = 1.0 / (1.0 + (-z).exp());
            let f = (p[0] - p[1]) * s + p[1];
            let dfdz = (p[0] - p[1]) * s * (1.0 - s);
            let j = [s, 1.0 - s, -dfdz / s4, -dfdz * z / s4 * sign4];
            let r = yi - f;
            for a in 0..4 {
                jtr[a] += j[a] * r;
                for b in a..4 {
                    jtj[a][b] += j[a] * j[b];
                }
            }
        }
        for a in 0..4 {
            for b in 0..a {
                jtj[a][b] = jtj[b][a];
            }
        }
        let dmax = (0..4).map(|a| jtj[a][a]).fold(0.0, f64::max);
        if dmax.is_nan() || dmax <= 0.0 || dmax.is_infinite() {
            break;
        }
        let mut improved = false;
        let mut small_step = false;
        while lambda < 1e16 {
            let mut a = jtj;
            for k in 0..4 {
                a[k][k] += lambda * jtj[k][k].max(1e-12 * dmax);
            }
            let Some(delta) = solve4(a, jtr) else {
                lambda *= 10.0;
                continue;
            };
            let mut q = p;
            for k in 0..4 {
                q[k] += delta[k];
            }
            if q[3].abs() < B4_MIN {
                q[3] = B4_MIN.copysign(q[3]);
            }
            let e = logistic_sse(x, y, &q);
            if e.is_finite() && e <= err {
                let step: f64 = delta.iter().map(|d| d * d).sum::<f64>().sqrt();
                let pn: f64 = p.iter().map(|v| v * v).sum::<f64>().sqrt();
                small_step = step <= 1e-12 * (pn + 1e-12) || err - e <= 1e-15 * err;
                improved = e < err;
                p = q;
                err = e;
                lambda = (lambda / 10.0).max(1e-15);
                break;
            }
            lambda *= 10.0;
        }
        if !improved || small_step {
            break;
        }
    }
    p[3] = p[3].abs();
    (p, err)
}

/// Solves the 4x4 system `a x = b` by Gaussian elimination with partial
/// pivoting; `None` if singular.
#[allow(clippy::needless_range_loop)]
fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for c in 0..4 {
        let piv = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        let d = a[piv][c].abs();
        if d == 0.0 || d.is_nan() {
            return None;
        }
        a.swap(c, piv);
        b.swap(c, piv);
        for r in c + 1..4 {
            let f = a[r][c] / a[c][c];
            for k in c..4 {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; 4];
    for r in (0..4).rev() {
        let s: f64 = (r + 1..4).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// PLCC between the logistic-mapped predictions `f(x)` ([`fit_logistic4`])
/// and `y`. NaN on degenerate data (the flat fit has zero variance).
pub fn plcc_after_logistic(x: &[f64], y: &[f64]) -> f64 {
    let f = fit_logistic4(x, y);
    let mapped: Vec<f64> = x.iter().map(|&a| f.eval(a)).collect();
    plcc(&mapped, y)
}

/// All evaluation numbers for predictions against ground truth (MOS).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Correlations {
    /// Number of samples.
    pub n: usize,
    /// Pearson correlation of the raw predictions.
    pub plcc: f64,
    /// Spearman rank correlation.
    pub srcc: f64,
    /// Kendall tau-b.
    pub krcc: f64,
    /// RMSE between the logistic-mapped predictions and the truth (in MOS
    /// units).
    pub rmse: f64,
    /// Pearson correlation after the 4-parameter logistic mapping.
    pub plcc_logistic: f64,
}

impl Correlations {
    /// NTIRE IQA challenge main score: `plcc + srcc` (raw PLCC, no logistic
    /// mapping). NaN if either is NaN.
    pub fn main_score(&self) -> f64 {
        self.plcc + self.srcc
    }
}

/// Computes [`Correlations`] of `pred` against `truth`. Degenerate inputs
/// (n < 2, constant vector, non-finite values) give NaN correlations; `rmse`
/// is then the RMSE of the flat fit (i.e. the std of `truth`), or NaN if any
/// value is non-finite.
///
/// # Panics
/// If `pred.len() != truth.len()`.
pub fn correlations(pred: &[f64], truth: &[f64]) -> Correlations {
    assert_eq!(pred.len(), truth.len(), "correlations: length mismatch");
    let f = fit_logistic4(pred, truth);
    let mapped: Vec<f64> = pred.iter().map(|&a| f.eval(a)).collect();
    Correlations {
        n: pred.len(),
        plcc: plcc(pred, truth),
        srcc: srcc(pred, truth),
        krcc: krcc(pred, truth),
        rmse: rmse(&mapped, truth),
        plcc_logistic: plcc(&mapped, truth),
    }
}

fn all_finite(v: &[f64]) -> bool {
    v.iter().all(|a| a.is_finite())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Population standard deviation.
fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    //! Oracle constants were produced by `python3` 3.11 with numpy 2.4.6 and
    //! scipy 1.17.1 (`scipy.stats.rankdata/pearsonr/spearmanr/kendalltau`,
    //! `scipy.optimize.curve_fit`) from the same inputs as below.
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    const TX: [f64; 10] = [1., 2., 2., 3., 3., 3., 4., 5., 5., 6.];
    const TY: [f64; 10] = [2., 1., 3., 3., 3., 5., 4., 4., 6., 6.];

    #[test]
    fn ties_match_scipy() {
        assert_eq!(
            rankdata(&TX),
            vec![1.0, 2.5, 2.5, 5.0, 5.0, 5.0, 7.0, 8.5, 8.5, 10.0]
        );
        assert_eq!(
            rankdata(&TY),
            vec![2.0, 1.0, 4.0, 4.0, 4.0, 8.0, 6.5, 6.5, 9.5, 9.5]
        );
        assert!(close(plcc(&TX, &TY), 0.8263588797984174, 1e-14));
        assert!(close(srcc(&TX, &TY), 0.8616352201257862, 1e-14));
        assert!(close(krcc(&TX, &TY), 0.75, 1e-14));
        assert!(close(rmse(&TX, &TY), 0.9486832980505138, 1e-14));
    }

    #[test]
    fn kendall_tau_b_scipy_doc_example() {
        // scipy.stats.kendalltau docstring example (ties in both vectors).
        let x = [12., 2., 1., 12., 2.];
        let y = [1., 4., 7., 1., 0.];
        assert!(close(krcc(&x, &y), -0.4714045207910316, 1e-14));
    }

    /// O(n^2) tau-b straight from the definition.
    fn krcc_naive(x: &[f64], y: &[f64]) -> f64 {
        let (mut s, mut tx, mut ty) = (0i64, 0i64, 0i64);
        let n = x.len();
        for i in 0..n {
            for j in i + 1..n {
                let a = (x[i] - x[j]).signum() as i64 * (x[i] != x[j]) as i64;
                let b = (y[i] - y[j]).signum() as i64 * (y[i] != y[j]) as i64;
                s += a * b;
                tx += (a != 0) as i64;
                ty += (b != 0) as i64;
            }
        }
        s as f64 / ((tx as f64) * (ty as f64)).sqrt()
    }

    #[test]
    fn kendall_many_ties_matches_naive_and_scipy() {
        let x: Vec<f64> = (0..300u64)
            .map(|n| ((n * 37) % 23) as f64 + 0.5 * ((n * 11) % 3) as f64)
            .collect();
        let y: Vec<f64> = (0..300u64)
            .zip(&x)
            .map(|(n, &kx)| ((n * n * 7 + n) % 17) as f64 + 0.1 * kx)
            .collect();
        let k = krcc(&x, &y);
        assert!(close(k, krcc_naive(&x, &y), 1e-13));
        assert!(close(k, 0.1774372863445884, 1e-13));
        assert!(close(srcc(&x, &y), 0.22610138242569755, 1e-13));
        assert!(close(plcc(&x, &y), 0.1846320771157873, 1e-13));
    }

    #[test]
    fn perfect_and_reverse_orders() {
        let x: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let up: Vec<f64> = x.iter().map(|v| v.powi(3) + 2.0).collect();
        let down: Vec<f64> = x.iter().map(|v| -v.exp()).collect();
        assert!(close(srcc(&x, &up), 1.0, 1e-15));
        assert!(close(krcc(&x, &up), 1.0, 1e-15));
        assert!(close(plcc(&x, &x), 1.0, 1e-15));
        assert!(close(srcc(&x, &down), -1.0, 1e-15));
        assert!(close(krcc(&x, &down), -1.0, 1e-15));
        let neg: Vec<f64> = x.iter().map(|v| 3.0 - 2.0 * v).collect();
        assert!(close(plcc(&x, &neg), -1.0, 1e-15));
    }

    #[test]
    fn degenerate_inputs_give_nan() {
        let c = [2.0; 6];
        let v = [1., 2., 3., 4., 5., 6.];
        let mut nan = v;
        nan[2] = f64::NAN;
        for (a, b) in [
            (&c[..], &v[..]),
            (&v[..], &c[..]),
            (&nan[..], &v[..]),
            (&v[..1], &v[..1]),
            (&[][..], &[][..]),
        ] {
            assert!(plcc(a, b).is_nan());
            assert!(srcc(a, b).is_nan());
            assert!(krcc(a, b).is_nan());
            assert!(plcc_after_logistic(a, b).is_nan());
            let f = fit_logistic4(a, b);
            assert!(f.is_flat());
            assert!([f.b1, f.b2, f.b3, f.b4].iter().all(|p| p.is_finite()));
            let cr = correlations(a, b);
            assert!(cr.main_score().is_nan());
        }
        assert!(rmse(&[], &[]).is_nan());
        assert!(rankdata(&nan).iter().all(|r| r.is_nan()));
        // Flat fit of constant predictions: the mean of y.
        let f = fit_logistic4(&c, &v);
        assert_eq!(f.eval(123.0), 3.5);
        assert!(close(correlations(&c, &v).rmse, 1.707825127659933, 1e-12));
    }

    #[test]
    fn logistic_recovers_known_parameters() {
        let truth = Logistic4 {
            b1: 5.0,
            b2: 1.0,
            b3: 4.5,
            b4: 1.2,
        };
        let x: Vec<f64> = (0..40).map(|i| i as f64 * 0.25).collect();
        // Noise-free: exact recovery.
        let y: Vec<f64> = x.iter().map(|&v| truth.eval(v)).collect();
        let f = fit_logistic4(&x, &y);
        for (a, b) in [(f.b1, 5.0), (f.b2, 1.0), (f.b3, 4.5), (f.b4, 1.2)] {
            assert!(close(a, b, 1e-6), "{f:?}");
        }
        // Decreasing curve (anti-correlated data) is fitted too.
        let yd: Vec<f64> = y.iter().map(|v| 6.0 - v).collect();
        let fd = fit_logistic4(&x, &yd);
        for (a, b) in [(fd.b1, 1.0), (fd.b2, 5.0), (fd.b3, 4.5), (fd.b4, 1.2)] {
            assert!(close(a, b, 1e-6), "{fd:?}");
        }
        // Noisy: same optimum as scipy.optimize.curve_fit (tight tolerances).
        let yn: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v + 0.05 * (i as f64 * 1.7).sin())
            .collect();
        let f = fit_logistic4(&x, &yn);
        let want = [
            5.000884868834971,
            1.0044609618621212,
            4.504395477098745,
            1.198312447603866,
        ];
        for (a, b) in [f.b1, f.b2, f.b3, f.b4].into_iter().zip(want) {
            assert!(close(a, b, 1e-6), "{f:?}");
        }
        let c = correlations(&x, &yn);
        assert_eq!(c.n, 40);
        assert!(close(c.plcc_logistic, 0.9997120485575562, 1e-10));
        assert!(close(c.rmse, 0.03494120762669576, 1e-8));
        assert!(close(c.plcc, 0.9800153669289775, 1e-13));
        assert!(close(c.srcc, 0.9979362101313323, 1e-13));
        assert!(close(c.krcc, 0.976923076923077, 1e-13));
        assert!(close(c.main_score(), c.plcc + c.srcc, 0.0));
        assert!(close(plcc_after_logistic(&x, &yn), c.plcc_logistic, 0.0));
    }
}
