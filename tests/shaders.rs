//! Every embedded WGSL file parses and validates with naga, with its override constants at
//! their defaults and with every value the engine specialises them to; the shaders generic
//! over their storage type also in their f16 variant.

use asna::gpu::pipeline::shader_source;
use asna::gpu::DType;

/// Every shader and, for the generic ones, its f16 variant (naga needs the SHADER_FLOAT16
/// capability for those, which `Capabilities::all()` includes).
fn variants() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, src) in asna::ops::SHADERS {
        out.push((name.to_string(), src.to_string()));
        if let Some(f16) = shader_source(src, DType::F16) {
            out.push((format!("{name} (f16)"), f16.into_owned()));
        }
    }
    out
}

#[test]
fn the_scoring_shaders_have_f16_variants() {
    let generic: Vec<String> = variants()
        .into_iter()
        .filter_map(|(n, _)| n.strip_suffix(" (f16)").map(str::to_string))
        .collect();
    for want in [
        "conv.wgsl",
        "eltwise.wgsl",
        "pool.wgsl",
        "concat.wgsl",
        "image.wgsl",
        "reduce.wgsl",
    ] {
        assert!(
            generic.iter().any(|g| g == want),
            "{want} has no f16 variant"
        );
    }
    for f32_only in [
        "adam.wgsl",
        "loss.wgsl",
        "batchnorm.wgsl",
        "conv_uniform.wgsl",
    ] {
        assert!(
            !generic.iter().any(|g| g == f32_only),
            "{f32_only} should be f32 only"
        );
    }
}

#[test]
fn every_shader_parses_and_validates() {
    assert!(asna::ops::SHADERS.len() >= 9);
    for (name, src) in &variants() {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(
            module
                .entry_points
                .iter()
                .all(|ep| ep.stage == naga::ShaderStage::Compute),
            "{name}: compute only"
        );
        assert!(!module.entry_points.is_empty(), "{name}: no entry point");
    }
}

#[test]
fn conv_kernel_specialisations_validate() {
    let src = asna::ops::SHADERS
        .iter()
        .find(|(n, _)| *n == "conv.wgsl")
        .unwrap()
        .1;
    for dtype in [DType::F32, DType::F16] {
        conv_specialisations_validate(&shader_source(src, dtype).unwrap(), dtype);
    }
}

fn conv_specialisations_validate(src: &str, dtype: DType) {
    use asna::gpu::kernels::{Family, TileConfig};
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    let info = validator.validate(&module).unwrap();
    for mode in 0..3 {
        for entry in ["conv_gemm", "conv_direct"] {
            // Every configuration `asna tune` may choose, for every product width.
            let mut configs: Vec<(usize, usize, usize, usize)> = Vec::new();
            for gn in [1, 3, 8, 16, 32, 64, 128] {
                for c in TileConfig::candidates(&[Family::Tiled, Family::Direct], gn) {
                    if !configs.contains(&(c.tm, c.tn, c.threads_n, c.wg)) {
                        configs.push((c.tm, c.tn, c.threads_n, c.wg));
                    }
                }
            }
            for (tm, tn, threads_n, wg) in configs {
                let mut constants = naga::back::PipelineConstants::default();
                constants.insert("MODE".into(), mode as f64);
                constants.insert("TM".into(), tm as f64);
                constants.insert("TN".into(), tn as f64);
                constants.insert("THREADS_N".into(), threads_n as f64);
                constants.insert("WG".into(), wg as f64);
                naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((naga::ShaderStage::Compute, entry)),
                    &constants,
                )
                .unwrap_or_else(|e| {
                    panic!("{dtype:?} {entry} MODE={mode} TM={tm} TN={tn} THREADS_N={threads_n} WG={wg}: {e:?}")
                });
            }
        }
    }
}

/// The CPU-driver family's entry points under every configuration `asna tune` may choose.
#[test]
fn uniform_conv_specialisations_validate() {
    use asna::gpu::kernels::{Family, TileConfig};
    let src = asna::ops::SHADERS
        .iter()
        .find(|(n, _)| *n == "conv_uniform.wgsl")
        .unwrap()
        .1;
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    let info = validator.validate(&module).unwrap();
    let mut configs: Vec<(usize, usize)> = Vec::new();
    for gn in [1, 3, 8, 16, 32, 64, 128] {
        for c in TileConfig::candidates(&[Family::Uniform], gn) {
            assert!(c.valid(), "{}", c.describe());
            if !configs.contains(&(c.tm, c.tn)) {
                configs.push((c.tm, c.tn));
            }
        }
    }
    for mode in 0..2 {
        for entry in ["conv_uniform", "conv_uniform_dw", "pack_weights"] {
            for &(tm, tn) in &configs {
                let mut constants = naga::back::PipelineConstants::default();
                constants.insert("MODE".into(), mode as f64);
                constants.insert("TM".into(), tm as f64);
                constants.insert("TN4".into(), (tn / 4) as f64);
                naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((naga::ShaderStage::Compute, entry)),
                    &constants,
                )
                .unwrap_or_else(|e| panic!("{entry} MODE={mode} TM={tm} TN={tn}: {e:?}"));
            }
        }
    }
}
