//! A CPU-driver family: shaders/conv.wgsl `conv_direct`, direct loads without workgroup
//! memory or barriers, each thread its own output channels. Kept beside `uniform` for the
//! products too short for it (dense layers) and for f16; launches and parameter block in
//! `gemm.rs`.

use super::gemm::{self, EntryPoint};
use super::{ConvFamily, ConvGeom, Family, ForwardOperands, Role, TileConfig};
use crate::gpu::{Gpu, Kernel, Tensor};

pub const FAMILY: Family = Family(&Direct);

pub struct Direct;

static ENTRY: EntryPoint = EntryPoint::new("conv_direct");

impl ConvFamily for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }

    fn shader(&self) -> (&'static str, &'static str) {
        gemm::SHADER
    }

    fn role(&self, _device: wgpu::DeviceType) -> Role {
        Role::Candidate
    }

    fn f16_stand_in(&self) -> Option<Family> {
        None
    }

    /// The register tile fits (`gemm::registers_fit`); without workgroup tiles nothing else
    /// limits it.
    fn valid(&self, cfg: &TileConfig) -> bool {
        gemm::registers_fit(cfg)
    }

    fn candidates(&self, gn: usize) -> Vec<TileConfig> {
        // It serves CPU drivers, where a workgroup is a loop: 64 threads.
        gemm::candidates(FAMILY, &[64], gn)
    }

    /// Neighbouring threads take neighbouring output channels (contiguous weight loads); each
    /// thread holds the full 32 accumulators, up to 8 columns wide. This is the rule
    /// `asna tune` found on lavapipe for most of the model's shapes (narrow layers with one or
    /// two threads along N were 2-4x faster than spreading them over 8).
    fn default_tile(&self, gn: usize) -> TileConfig {
        let width = gn.next_power_of_two().clamp(1, 64);
        let tn = width.min(8);
        TileConfig::new(FAMILY, 32 / tn.max(4), tn, (width / 8).max(1))
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
