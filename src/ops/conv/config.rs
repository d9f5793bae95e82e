//! One configuration of a convolution family's kernels: the family and its tile. This is what
//! the policy chooses, what the launches read, and what the tuning cache stores.

use super::policy::TunedKernel;
use super::Family;
use serde::{Deserialize, Serialize};

/// The family, the register tile per thread (TM rows x TN columns of C), the threads along N
/// (wg / threads_n along M), the threads per workgroup and the output tiles an invocation
/// runs along a row (`run`, the Winograd family's; 1 in the others). Serialised into the
/// tuning cache as it is. A family may read the fields its own way (`uniform.rs`: TM pixels
/// per invocation, TN output channels shared by the workgroup); its `valid` says which values
/// it can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileConfig {
    #[serde(rename = "kernel")]
    pub family: Family,
    pub tm: usize,
    pub tn: usize,
    pub threads_n: usize,
    #[serde(default = "default_workgroup")]
    pub wg: usize,
    #[serde(default = "single_tile")]
    pub run: usize,
}

/// Cache entries written before the workgroup size was tunable ran 64 threads.
fn default_workgroup() -> usize {
    64
}

/// Cache entries written before runs of tiles ran one tile per invocation.
fn single_tile() -> usize {
    1
}

impl TileConfig {
    pub const fn new(family: Family, tm: usize, tn: usize, threads_n: usize) -> TileConfig {
        TileConfig {
            family,
            tm,
            tn,
            threads_n,
            wg: 64,
            run: 1,
        }
    }

    pub const fn with_wg(self, wg: usize) -> TileConfig {
        TileConfig { wg, ..self }
    }

    pub const fn with_run(self, run: usize) -> TileConfig {
        TileConfig { run, ..self }
    }

    /// Whether the family's shader can run this configuration.
    pub fn valid(&self) -> bool {
        (1..=self.family.max_run()).contains(&self.run) && self.family.valid(self)
    }

    /// Rows of C per workgroup.
    pub fn bm(&self) -> usize {
        self.wg / self.threads_n * self.tm
    }

    /// Columns of C per workgroup.
    pub fn bn(&self) -> usize {
        self.threads_n * self.tn
    }

    pub fn describe(&self) -> String {
        self.family.describe(self)
    }

    /// This configuration as a tuning-cache entry, with the times that made it win.
    pub fn to_tuned(&self, images: usize, tuned_us: f64, default_us: f64) -> TunedKernel {
        TunedKernel {
            config: *self,
            images: images as u32,
            tuned_us,
            default_us,
        }
    }
}
