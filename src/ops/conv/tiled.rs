//! The GPU family: shaders/conv.wgsl `conv_gemm`. Each workgroup stages BK-deep slices of both
//! operands in workgroup memory and each thread accumulates a TM x TN register tile; launches
//! and parameter block in `gemm.rs`.

use super::gemm::{self, EntryPoint, WORKGROUP_SIZES};
use super::{ConvFamily, ConvGeom, Family, ForwardOperands, Role, TileConfig};
use crate::gpu::{Gpu, Kernel, Tensor};

pub const FAMILY: Family = Family(&Tiled);

pub struct Tiled;

static ENTRY: EntryPoint = EntryPoint::new("conv_gemm");

impl ConvFamily for Tiled {
    fn name(&self) -> &'static str {
        "tiled"
    }

    fn shader(&self) -> (&'static str, &'static str) {
        gemm::SHADER
    }

    fn role(&self, device: wgpu::DeviceType) -> Role {
        // On a CPU driver workgroup memory is ordinary memory and barriers are costly.
        if device == wgpu::DeviceType::Cpu {
            Role::Unused
        } else {
            Role::Native
        }
    }

    fn f16_stand_in(&self) -> Option<Family> {
        None
    }

    /// The register tile fits (`gemm::registers_fit`), and the workgroup tiles hold BM <= 128
    /// and BN <= 64 (12 KiB, within every adapter's 16 KiB) with BN <= threads for staging.
    fn valid(&self, cfg: &TileConfig) -> bool {
        gemm::registers_fit(cfg) && cfg.bm() <= 128 && cfg.bn() <= 64 && cfg.bn() <= cfg.wg
    }

    fn candidates(&self, gn: usize) -> Vec<TileConfig> {
        gemm::candidates(FAMILY, &WORKGROUP_SIZES, gn)
    }

    /// By the width of the product, so that narrow layers (3 or 8 output channels) do not
    /// waste a 64-wide tile.
    fn default_tile(&self, gn: usize) -> TileConfig {
        let t = |tm, tn, threads_n| TileConfig::new(FAMILY, tm, tn, threads_n);
        match gn {
            0..=4 => t(2, 4, 1),
            5..=8 => t(4, 4, 2),
            9..=16 => t(4, 4, 4),
            17..=32 => t(8, 4, 8),
            _ => t(4, 8, 8),
        }
    }

    fn launches(&self, cfg: &TileConfig) -> Vec<(&'static Kernel, Vec<(&'static str, f64)>)> {
        ENTRY.launches(cfg)
    }

    fn forward(&self, gpu: &Gpu, cfg: &TileConfig, g: &ConvGeom, op: &ForwardOperands, y: &Tensor) {
        gemm::forward(gpu, &ENTRY, cfg, g, op, y)
    }

    fn grad_input(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        dz: &Tensor,
        w: &Tensor,
        dx: &Tensor,
    ) {
        gemm::grad_input(gpu, &ENTRY, cfg, g, dz, w, dx)
    }

    fn grad_weight(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        x: &Tensor,
        dz: &Tensor,
    ) -> Tensor {
        gemm::grad_weight(gpu, &ENTRY, cfg, g, x, dz)
    }
}
