//! Every embedded WGSL file parses and validates with naga, with its override constants at
//! their defaults and with every value the engine specialises them to.

#[test]
fn every_shader_parses_and_validates() {
    assert!(asna::ops::SHADERS.len() >= 9);
    for (name, src) in asna::ops::SHADERS {
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
    use asna::ops::conv::{TileConfig, Variant};
    let src = asna::ops::SHADERS
        .iter()
        .find(|(n, _)| *n == "conv.wgsl")
        .unwrap()
        .1;
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    let info = validator.validate(&module).unwrap();
    for mode in 0..3 {
        for entry in ["conv_gemm", "conv_direct"] {
            // Every configuration `asna tune` may choose, for every product width.
            let mut configs: Vec<(usize, usize, usize)> = Vec::new();
            for gn in [1, 3, 8, 16, 32, 64, 128] {
                for c in TileConfig::candidates(&[Variant::Tiled, Variant::Direct], gn) {
                    if !configs.contains(&(c.tm, c.tn, c.threads_n)) {
                        configs.push((c.tm, c.tn, c.threads_n));
                    }
                }
            }
            for (tm, tn, threads_n) in configs {
                let mut constants = naga::back::PipelineConstants::default();
                constants.insert("MODE".into(), mode as f64);
                constants.insert("TM".into(), tm as f64);
                constants.insert("TN".into(), tn as f64);
                constants.insert("THREADS_N".into(), threads_n as f64);
                naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((naga::ShaderStage::Compute, entry)),
                    &constants,
                )
                .unwrap_or_else(|e| {
                    panic!("{entry} MODE={mode} TM={tm} TN={tn} THREADS_N={threads_n}: {e:?}")
                });
            }
        }
    }
}
