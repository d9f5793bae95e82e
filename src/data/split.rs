//! Train / validation split by reference image, and label standardisation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::datasets::{Direction, PairRecord};
use crate::rng::Rng;

/// Stream label for the split's random numbers (keeps them apart from other uses of the seed).
const SPLIT_STREAM: u64 = 0x5350_4C49_5421; // "SPLIT!"

/// Pair indices grouped by reference: by the photograph a reference was cut from where the
/// labels name it, else by reference image (sorted by that key; indices ascending).
pub fn reference_groups(pairs: &[PairRecord]) -> BTreeMap<PathBuf, Vec<usize>> {
    let mut g: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        let key = match &p.source {
            // A prefix no path has, so that a source never merges with an image's group.
            Some(s) => PathBuf::from(format!("\0source:{s}")),
            None => p.ref_path.clone(),
        };
        g.entry(key).or_default().push(i);
    }
    g
}

/// Splits pair indices into (train, validation) by reference image: all pairs of one reference
/// land on the same side, so no reference content is shared between the two.
///
/// `round(val_fraction * references)` references go to validation, at least one and at most
/// all but one when there are two or more references and `val_fraction > 0`. Deterministic for
/// a seed (and independent of the order of `pairs`). Both lists are ascending.
pub fn split_by_reference(
    pairs: &[PairRecord],
    val_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let groups = reference_groups(pairs);
    let mut refs: Vec<&Vec<usize>> = groups.values().collect();
    let n = refs.len();
    let frac = if val_fraction.is_finite() {
        val_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut n_val = (frac * n as f64).round() as usize;
    if frac > 0.0 && n >= 2 {
        n_val = n_val.clamp(1, n - 1);
    }
    n_val = n_val.min(n);
    let mut rng = Rng::derive(seed, SPLIT_STREAM);
    rng.shuffle(&mut refs);
    let mut val: Vec<usize> = refs[..n_val]
        .iter()
        .flat_map(|g| g.iter().copied())
        .collect();
    let mut train: Vec<usize> = refs[n_val..]
        .iter()
        .flat_map(|g| g.iter().copied())
        .collect();
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

/// Standardises scores to zero mean / unit variance with "higher is better" orientation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelScaler {
    pub mean: f64,
    pub std: f64,
    pub direction: Direction,
}

impl LabelScaler {
    /// Mean and (population) standard deviation of `scores`; a degenerate std (fewer than two
    /// scores, all equal, or non-finite) is replaced by 1 so the scaler stays invertible.
    pub fn fit(scores: &[f64], direction: Direction) -> Self {
        let n = scores.len();
        let mean = if n == 0 {
            0.0
        } else {
            scores.iter().sum::<f64>() / n as f64
        };
        let var = if n == 0 {
            0.0
        } else {
            scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64
        };
        let std = var.sqrt();
        let std = if std.is_finite() && std > 1e-12 {
            std
        } else {
            1.0
        };
        let mean = if mean.is_finite() { mean } else { 0.0 };
        LabelScaler {
            mean,
            std,
            direction,
        }
    }

    /// Standardised score: higher is better whatever the dataset's direction.
    pub fn to_standard(&self, score: f64) -> f64 {
        let z = (score - self.mean) / self.std;
        match self.direction {
            Direction::HigherIsBetter => z,
            Direction::LowerIsBetter => -z,
        }
    }

    /// Inverse of [`to_standard`](Self::to_standard): back to the dataset's own scale.
    pub fn from_standard(&self, z: f64) -> f64 {
        let z = match self.direction {
            Direction::HigherIsBetter => z,
            Direction::LowerIsBetter => -z,
        };
        z * self.std + self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n_refs: usize, per_ref: usize) -> Vec<PairRecord> {
        let mut v = Vec::new();
        for d in 0..per_ref {
            for r in 0..n_refs {
                v.push(PairRecord {
                    ref_path: PathBuf::from(format!("/d/ref{r:03}.bmp")),
                    dist_path: PathBuf::from(format!("/d/ref{r:03}_{d}.bmp")),
                    score: (r * 10 + d) as f64,
                    dis_type: String::new(),
                    line: v.len() + 2,
                    source: None,
                });
            }
        }
        v
    }

    #[test]
    fn split_keeps_references_apart_and_is_deterministic() {
        let p = pairs(81, 5);
        let (train, val) = split_by_reference(&p, 0.2, 7);
        assert_eq!(train.len() + val.len(), p.len());
        let tr: std::collections::HashSet<_> = train.iter().map(|&i| &p[i].ref_path).collect();
        let va: std::collections::HashSet<_> = val.iter().map(|&i| &p[i].ref_path).collect();
        assert!(tr.is_disjoint(&va));
        assert_eq!(va.len(), 16); // round(0.2 * 81)
        assert_eq!(split_by_reference(&p, 0.2, 7), (train.clone(), val.clone()));
        assert_ne!(split_by_reference(&p, 0.2, 8).1, val);
        // Independent of the order of the pairs (as a set of references).
        let mut q = p.clone();
        q.reverse();
        let (_, val_q) = split_by_reference(&q, 0.2, 7);
        let va_q: std::collections::HashSet<_> = val_q.iter().map(|&i| &q[i].ref_path).collect();
        assert_eq!(va, va_q);
    }

    #[test]
    fn crops_of_one_photograph_stay_on_one_side() {
        // 30 photographs of 3 crops each: the crops are distinct reference images that name
        // their photograph as their source.
        let mut p = pairs(90, 2);
        for r in &mut p {
            let crop: usize = r.ref_path.to_string_lossy()[6..9].parse().unwrap();
            r.source = Some(format!("photo{}", crop / 3));
        }
        assert_eq!(reference_groups(&p).len(), 30);
        let (train, val) = split_by_reference(&p, 0.2, 3);
        assert_eq!(train.len() + val.len(), p.len());
        let sources = |idx: &[usize]| -> std::collections::HashSet<String> {
            idx.iter().map(|&i| p[i].source.clone().unwrap()).collect()
        };
        assert!(sources(&train).is_disjoint(&sources(&val)));
        assert_eq!(sources(&val).len(), 6); // round(0.2 * 30) photographs, whole
        assert_eq!(val.len(), 6 * 3 * 2);
    }

    #[test]
    fn split_edge_cases() {
        let p = pairs(2, 3);
        let (t, v) = split_by_reference(&p, 0.01, 1);
        assert_eq!((t.len(), v.len()), (3, 3));
        let (t, v) = split_by_reference(&p, 1.0, 1);
        assert_eq!((t.len(), v.len()), (3, 3));
        let (t, v) = split_by_reference(&p, 0.0, 1);
        assert_eq!((t.len(), v.len()), (6, 0));
        let (t, v) = split_by_reference(&pairs(1, 4), 0.5, 1);
        assert_eq!(t.len() + v.len(), 4);
        assert_eq!(split_by_reference(&[], 0.2, 1), (vec![], vec![]));
        assert_eq!(reference_groups(&p).len(), 2);
    }

    #[test]
    fn scaler_round_trip_and_direction() {
        let s = [1.0, 2.0, 3.0, 4.0];
        let hi = LabelScaler::fit(&s, Direction::HigherIsBetter);
        let lo = LabelScaler::fit(&s, Direction::LowerIsBetter);
        assert!((hi.mean - 2.5).abs() < 1e-12);
        assert!(hi.to_standard(4.0) > hi.to_standard(1.0));
        assert!(lo.to_standard(1.0) > lo.to_standard(4.0));
        for &x in &s {
            assert!((hi.from_standard(hi.to_standard(x)) - x).abs() < 1e-12);
            assert!((lo.from_standard(lo.to_standard(x)) - x).abs() < 1e-12);
        }
        let zs: Vec<f64> = s.iter().map(|&x| hi.to_standard(x)).collect();
        assert!(zs.iter().sum::<f64>().abs() < 1e-12);
        assert!((zs.iter().map(|z| z * z).sum::<f64>() / 4.0 - 1.0).abs() < 1e-12);
        let flat = LabelScaler::fit(&[3.0, 3.0], Direction::HigherIsBetter);
        assert_eq!(flat.std, 1.0);
    }
}
