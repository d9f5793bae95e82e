//! `asna devices`: every adapter wgpu can reach, with what matters to asna.

use crate::gpu::context::{try_enumerate, wanted_features, NO_ADAPTER_HELP};
use anyhow::{bail, Result};

fn mib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", b >> 20)
    }
}

// `asna devices`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// One JSON object per adapter: name, backend, type, driver, the limits that bound asna's
/// batches, and the optional features asna uses that the adapter offers.
pub fn adapter_rows(adapters: &[wgpu::Adapter]) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for a in adapters {
        let info = a.get_info();
        let l = a.limits();
        let feats = a.features();
        let mut used: Vec<&str> = Vec::new();
        for (flag, name) in [
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::SHADER_F16, "shader-f16"),
        ] {
            if feats.contains(flag) && wanted_features().contains(flag) {
                used.push(name);
            }
        }
        rows.push(serde_json::json!({
            "name": info.name,
            "backend": format!("{:?}", info.backend),
            "type": format!("{:?}", info.device_type),
            "driver": format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            "max_storage_binding_bytes": l.max_storage_buffer_binding_size,
            "max_buffer_bytes": l.max_buffer_size,
            "workgroup_memory_bytes": l.max_compute_workgroup_storage_size,
            "max_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "storage_buffers_per_stage": l.max_storage_buffers_per_shader_stage,
            "features": used,
        }));
    }
    rows
}

pub fn run(args: &DevicesArgs) -> Result<()> {
    let json = args.json;
    let adapters = try_enumerate()?;
    if adapters.is_empty() {
        bail!("{NO_ADAPTER_HELP}");
    }
    let rows = adapter_rows(&adapters);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for (i, (a, r)) in adapters.iter().zip(&rows).enumerate() {
        let l = a.limits();
        println!("[{i}] {}", r["name"].as_str().unwrap_or(""));
        println!(
            "    backend {}  type {}  driver {}",
            r["backend"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["driver"].as_str().unwrap_or("")
        );
        println!(
            "    max storage binding {}  max buffer {}  workgroup memory {} KiB  invocations/workgroup {}  storage buffers/stage {}",
            mib(l.max_storage_buffer_binding_size),
            mib(l.max_buffer_size),
            l.max_compute_workgroup_storage_size / 1024,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffers_per_shader_stage
        );
        let f: Vec<&str> = r["features"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        println!(
            "    features used by asna: {}",
            if f.is_empty() {
                "none".to_string()
            } else {
                f.join(", ")
            }
        );
    }
    Ok(())
}
