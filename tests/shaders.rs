//! Every embedded WGSL file parses and validates with naga, with its override constants at
//! their defaults and, for every convolution family in `conv::FAMILIES`, with every value the
//! engine specialises them to; the shaders generic over their storage type also in their f16
//! variant.

use asna::gpu::pipeline::shader_source;
use asna::gpu::DType;

/// Every shader and, for the generic ones, its f16 variant (naga needs the SHADER_FLOAT16
/// capability for those, which `Capabilities::all()` includes).
fn variants() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, src) in asna::ops::all_shaders() {
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
    assert!(asna::ops::all_shaders().len() >= 11);
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

/// Every kernel of every convolution family under every configuration `asna tune` may choose
/// for every product width, in f32 and, where the kernel has one, its f16 variant.
#[test]
fn conv_family_specialisations_validate() {
    use asna::ops::conv::FAMILIES;
    for &family in FAMILIES {
        let mut modules = Vec::new();
        for (file, src) in family.shaders() {
            for dtype in [DType::F32, DType::F16] {
                if let Some(variant) = shader_source(src, dtype) {
                    let module = naga::front::wgsl::parse_str(&variant).unwrap_or_else(|e| {
                        panic!("{file} {dtype:?}: {}", e.emit_to_string(&variant))
                    });
                    let info = naga::valid::Validator::new(
                        naga::valid::ValidationFlags::all(),
                        naga::valid::Capabilities::all(),
                    )
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{file} {dtype:?}: {e:?}"));
                    modules.push((file, dtype, module, info));
                }
            }
        }
        let mut configs = Vec::new();
        for gn in [1, 3, 8, 16, 32, 64, 128] {
            for c in family.candidates(gn) {
                assert!(c.valid(), "{}", c.describe());
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
        }
        let mut checked = 0;
        for cfg in &configs {
            for (kernel, constants) in family.launches(cfg) {
                assert!(
                    family.shaders().iter().any(|(f, _)| *f == kernel.file),
                    "{}: {} is not in its shaders",
                    family.name(),
                    kernel.entry
                );
                for (file, dtype, module, info) in &modules {
                    if *file != kernel.file || (*dtype == DType::F16 && !kernel.f16) {
                        continue;
                    }
                    let mut overrides = naga::back::PipelineConstants::default();
                    for (name, value) in &constants {
                        overrides.insert(name.to_string(), *value);
                    }
                    naga::back::pipeline_constants::process_overrides(
                        module,
                        info,
                        Some((naga::ShaderStage::Compute, kernel.entry)),
                        &overrides,
                    )
                    .unwrap_or_else(|e| panic!("{dtype:?} {} {constants:?}: {e:?}", kernel.entry));
                    checked += 1;
                }
            }
        }
        assert!(
            checked > configs.len(),
            "{}: only {checked} specialisations",
            family.name()
        );
    }
}

/// Each family's candidates include its default tile, and its defaults are configurations it
/// can run, for every product width.
#[test]
fn conv_family_defaults_are_valid_candidates() {
    use asna::ops::conv::FAMILIES;
    for &family in FAMILIES {
        for gn in [1, 3, 5, 8, 16, 33, 64, 128, 256] {
            let d = family.default_tile(gn);
            assert_eq!(d.family, family, "{}", d.describe());
            assert!(d.valid(), "{}", d.describe());
            assert!(family.candidates(gn).contains(&d), "{}", d.describe());
        }
    }
}
