//! Plan files (src/plan/): a scoring pass recorded from the engine and replayed through wgpu
//! by the plan's own rules gives the engine's scores and feature differences to the bit, with
//! the kernels of either kind of adapter; plans that are malformed or out of bounds are
//! refused with one line; computations a plan cannot hold are refused when traced.

mod common;

use asna::model::asna::{predict, Taps, SIZE};
use asna::model::checkpoint::load_model;
use asna::plan::record::{finish, record_scoring, Kernels, WeightsFile};
use asna::plan::replay::Replay;
use asna::plan::{Command, Plan};

/// `count` 288x288 crops of the demo pair, at different places, as (reference, distorted).
fn demo_crops(count: usize) -> (Vec<u8>, Vec<u8>) {
    let open = |p: &str| image::open(p).expect("demo image").to_rgb8();
    let (r, d) = (open("data/demo/ref.png"), open("data/demo/dist.png"));
    let (mut rp, mut dp) = (Vec::new(), Vec::new());
    for i in 0..count {
        let (x0, y0) = (37 + 211 * i, 13 + 97 * i);
        for y in y0..y0 + SIZE {
            for x in x0..x0 + SIZE {
                rp.extend_from_slice(&r.get_pixel(x as u32, y as u32).0);
                dp.extend_from_slice(&d.get_pixel(x as u32, y as u32).0);
            }
        }
    }
    (rp, dp)
}

#[test]
fn replayed_plans_give_the_engines_outputs_to_the_bit() {
    let gpu = common::gpu();
    let model = load_model(&gpu, None).unwrap();
    let batch = 2;
    let (ref_px, dist_px) = demo_crops(batch);
    let mut weights = WeightsFile::default();
    let mut plans = Vec::new();
    for kernels in [Kernels::Cpu, Kernels::Gpu] {
        plans.push(record_scoring(&gpu, &model, batch, kernels, &mut weights, "w.bin").unwrap());
    }
    finish(&mut plans, &weights);
    assert_ne!(
        plans[0].families, plans[1].families,
        "the two kinds of adapter run different convolution families"
    );
    for plan in &plans {
        // Through JSON, as the browser reads it.
        let plan = Plan::from_json(plan.to_json().as_bytes(), "plan.json").unwrap();
        assert_eq!(plan.batch as usize, batch);
        let replay = Replay::new(&gpu.device, &gpu.queue, &plan, &weights.bytes, |name| {
            asna::ops::all_shaders()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.to_string())
                .ok_or_else(|| anyhow::anyhow!("no shader {name}"))
        })
        .unwrap();
        let mut pixels = ref_px.clone();
        pixels.extend_from_slice(&dist_px);
        let out = replay
            .run(&gpu.device, &gpu.queue, &[("pixels", &pixels)])
            .unwrap();

        // The engine, choosing kernels as the plan did.
        let kind = if plan.kernels == "cpu" {
            wgpu::DeviceType::Cpu
        } else {
            wgpu::DeviceType::DiscreteGpu
        };
        let previous = gpu.kernels.borrow_mut().choose_as(kind);
        let tuned = gpu.kernels.borrow_mut().set_use_tuned(false);
        let mut taps = Taps::default();
        let z = predict(
            &gpu,
            &model.store,
            &ref_px,
            &dist_px,
            batch,
            Some(&mut taps),
        );
        gpu.kernels.borrow_mut().choose_as(previous);
        gpu.kernels.borrow_mut().set_use_tuned(tuned);
        let bits = |v: Vec<f32>| -> Vec<u32> { v.iter().map(|x| x.to_bits()).collect() };
        let want_z = bits(gpu.download(&z).unwrap());
        let want_diff = bits(gpu.download(taps.feature_diff.as_ref().unwrap()).unwrap());
        let got = |name: &str| -> Vec<u32> { bytemuck::cast_slice(&out[name]).to_vec() };
        assert_eq!(got("score"), want_z, "{} plan: scores", plan.kernels);
        assert_eq!(
            got("feature_diff"),
            want_diff,
            "{} plan: feature differences",
            plan.kernels
        );
        assert_ne!(want_z[0], want_z[1], "the two pairs score differently");
        let z0 = f32::from_bits(want_z[0]) as f64;
        assert_eq!(
            plan.scale.from_standard(z0),
            model.scaler.from_standard(z0),
            "the plan's label scale"
        );
    }
}

fn small_plan() -> (Plan, Vec<u8>) {
    let gpu = common::gpu();
    let model = load_model(&gpu, None).unwrap();
    let mut weights = WeightsFile::default();
    let mut plan = record_scoring(&gpu, &model, 1, Kernels::Cpu, &mut weights, "w.bin").unwrap();
    finish(std::slice::from_mut(&mut plan), &weights);
    (plan, weights.bytes)
}

fn refused(plan: &Plan, needle: &str) {
    let Err(err) = Plan::from_json(plan.to_json().as_bytes(), "p.json") else {
        panic!("a bad plan must be refused (expected {needle:?})");
    };
    let msg = asna::one_line(&err);
    assert!(
        msg.starts_with("p.json: ") && msg.contains(needle),
        "{msg:?} should name the file and say {needle:?}"
    );
}

#[test]
fn malformed_plans_are_refused_with_one_line() {
    let (plan, _) = small_plan();
    assert!(Plan::from_json(plan.to_json().as_bytes(), "p.json").is_ok());

    let mut p = plan.clone();
    p.version = 2;
    refused(&p, "plan version Some(2)");
    let mut p = plan.clone();
    p.format = "something else".into();
    refused(&p, "not a plan file");
    let err =
        Plan::from_json(b"{\"format\": \"asna-plan\", \"version\": 1}", "p.json").unwrap_err();
    assert!(asna::one_line(&err).contains("malformed plan"));

    let mut p = plan.clone();
    p.buffers[3].size = 1 << 40;
    refused(&p, "buffer 3: size 1099511627776");
    let mut p = plan.clone();
    for b in &mut p.buffers {
        b.size = 2 << 30;
    }
    refused(&p, "more than");
    let mut p = plan.clone();
    let init = p.buffers.iter().position(|b| b.init.is_some()).unwrap();
    p.buffers[init].init = Some([p.weights_bytes - 4, 8]);
    refused(&p, "outside the weights file");

    let mut p = plan.clone();
    let at = p
        .commands
        .iter()
        .position(|c| matches!(c, Command::Dispatch { .. }))
        .unwrap();
    if let Command::Dispatch { bind, .. } = &mut p.commands[at] {
        bind[0].0 = 99_999;
    }
    refused(&p, &format!("command {at}: no buffer 99999"));
    let mut p = plan.clone();
    if let Command::Dispatch { bind, .. } = &mut p.commands[at] {
        bind.pop();
    }
    refused(&p, "bindings for a pipeline with");
    let mut p = plan.clone();
    if let Command::Dispatch { bind, .. } = &mut p.commands[at] {
        bind[0].1 = p.buffers[bind[0].0].size + 256;
    }
    refused(&p, "do not fit buffer");
    let mut p = plan.clone();
    p.shaders[0] = "../../etc/passwd".into();
    refused(&p, "plain .wgsl file name");
    let mut p = plan.clone();
    p.weights = "/tmp/w.bin".into();
    refused(&p, "plain file name");
}

#[test]
fn replay_refuses_weights_of_the_wrong_size_and_missing_inputs() {
    let gpu = common::gpu();
    let (plan, weights) = small_plan();
    let shader = |name: &str| {
        asna::ops::all_shaders()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.to_string())
            .ok_or_else(|| anyhow::anyhow!("no shader {name}"))
    };
    let err = Replay::new(&gpu.device, &gpu.queue, &plan, &weights[4..], shader)
        .err()
        .expect("short weights refused");
    assert!(err.to_string().contains("but the plan expects"), "{err}");
    let replay = Replay::new(&gpu.device, &gpu.queue, &plan, &weights, shader).unwrap();
    let err = replay.run(&gpu.device, &gpu.queue, &[]).unwrap_err();
    assert_eq!(err.to_string(), "input \"pixels\" missing");
    let err = replay
        .run(&gpu.device, &gpu.queue, &[("pixels", &[0u8; 12])])
        .unwrap_err();
    assert!(
        err.to_string().contains("12 bytes, the plan takes"),
        "{err}"
    );
}

#[test]
fn traces_refuse_what_a_plan_cannot_hold() {
    let gpu = common::gpu();
    // Reading a result back in the middle of the pass.
    let t = gpu.upload(&[4], &[1.0, 2.0, 3.0, 4.0]);
    gpu.begin_trace();
    let y = asna::ops::eltwise::scale(&gpu, &t, 2.0);
    gpu.download(&y).unwrap();
    let trace = gpu.end_trace();
    assert!(trace.problem.unwrap().contains("reads a result back"));

    // Writing a buffer that existed before the trace (its recorded contents would be stale).
    let (p, m, v, g) = (
        gpu.upload(&[4], &[1.0; 4]),
        gpu.zeros(&[4]),
        gpu.zeros(&[4]),
        gpu.upload(&[4], &[0.5; 4]),
    );
    gpu.begin_trace();
    asna::ops::adam::step(&gpu, &Default::default(), 0.1, 1, &p, &m, &v, &g);
    let trace = gpu.end_trace();
    assert!(trace
        .problem
        .unwrap()
        .contains("writes a buffer that existed before the trace"));

    // A pass that only reads existing buffers and writes its own is replayable, and logs
    // the existing one as such.
    gpu.begin_trace();
    let y = asna::ops::eltwise::scale(&gpu, &t, 2.0);
    let trace = gpu.end_trace();
    assert!(trace.problem.is_none());
    assert!(!trace.buffers[trace.index_of(t.raw()).unwrap()].scratch);
    assert!(trace.buffers[trace.index_of(y.raw()).unwrap()].scratch);
}

#[test]
fn copies_clears_and_constant_writes_replay_in_order() {
    use asna::plan::{Buffer, Port, Scale};
    let gpu = common::gpu();
    // Constant data in the weights file: 16 bytes at 0 (buffer 1's initial contents), 8 at 16
    // (a write in the middle of the pass).
    let weights: Vec<u8> = (0u8..24).collect();
    let port = |name: &str, buffer: usize, bytes: u64| Port {
        name: name.into(),
        buffer,
        bytes,
        layout: "u8".into(),
        shape: vec![bytes as usize],
    };
    let plan = Plan {
        format: asna::plan::FORMAT.into(),
        version: asna::plan::VERSION,
        model: "hand-made".into(),
        kernels: "cpu".into(),
        families: vec![],
        window: 288,
        batch: 1,
        scale: Scale {
            mean: 0.0,
            std: 1.0,
            higher_is_better: true,
        },
        param_slot: 256,
        weights: "w.bin".into(),
        weights_bytes: weights.len() as u64,
        shaders: vec![],
        pipelines: vec![],
        buffers: vec![
            Buffer {
                size: 16,
                init: None,
            },
            Buffer {
                size: 16,
                init: Some([0, 16]),
            },
            Buffer {
                size: 32,
                init: None,
            },
        ],
        commands: vec![
            Command::Write {
                buffer: 0,
                data: None,
                input: Some("x".into()),
            },
            // out[0..16] = x; out[16..32] = constants; then out[4..12] = weights[16..24];
            // then x is cleared, which must not reach out.
            Command::Copy {
                src: 0,
                src_offset: 0,
                dst: 2,
                dst_offset: 0,
                size: 16,
            },
            Command::Copy {
                src: 1,
                src_offset: 0,
                dst: 2,
                dst_offset: 16,
                size: 16,
            },
            Command::Write {
                buffer: 0,
                data: Some([16, 8]),
                input: None,
            },
            Command::Copy {
                src: 0,
                src_offset: 0,
                dst: 2,
                dst_offset: 4,
                size: 8,
            },
            Command::Clear {
                buffer: 0,
                size: 16,
            },
        ],
        inputs: vec![port("x", 0, 16)],
        outputs: vec![port("out", 2, 32), port("x_after", 0, 16)],
    };
    let plan = Plan::from_json(plan.to_json().as_bytes(), "hand.json").unwrap();
    let replay = Replay::new(&gpu.device, &gpu.queue, &plan, &weights, |_| unreachable!()).unwrap();
    let x: Vec<u8> = (100u8..116).collect();
    let out = replay
        .run(&gpu.device, &gpu.queue, &[("x", x.as_slice())])
        .unwrap();
    let mut want: Vec<u8> = x.clone();
    want[4..12].copy_from_slice(&weights[16..24]);
    want.extend_from_slice(&weights[0..16]);
    assert_eq!(out["out"], want);
    assert_eq!(out["x_after"], vec![0u8; 16]);
}

/// Each refusal of `Plan::check` not covered above, one plan change at a time: the parameter
/// slot, buffer sizes and initial contents, a binding that starts inside its buffer and runs
/// past its end or is unaligned, pipelines and shaders, parameter blocks, copies, clears,
/// writes (of constants, of inputs, of neither) and ports.
#[test]
fn every_check_of_a_plan_refuses_its_case() {
    let (plan, _) = small_plan();
    let change = |f: &dyn Fn(&mut Plan), needle: &str| {
        let mut p = plan.clone();
        f(&mut p);
        refused(&p, needle);
    };
    for slot in [0, 6, 65540] {
        change(&|p| p.param_slot = slot, "param_slot");
    }
    change(&|p| p.buffers[1].size = 0, "buffer 1: size 0");
    change(&|p| p.buffers[1].size = 6, "buffer 1: size 6");
    let init = plan.buffers.iter().position(|b| b.init.is_some()).unwrap();
    change(
        &|p| {
            let size = p.buffers[init].size;
            p.buffers[init].init = Some([0, size + 4]);
            p.weights_bytes = size + 4;
        },
        "initial bytes exceed its size",
    );
    let at = plan
        .commands
        .iter()
        .position(|c| matches!(c, Command::Dispatch { .. }))
        .unwrap();
    type Edit<'a> = &'a dyn Fn(&mut Vec<(usize, u64, Option<u64>)>, &mut Vec<u32>, &mut usize);
    let in_dispatch = |p: &mut Plan, f: Edit| {
        if let Command::Dispatch {
            bind,
            params,
            pipeline,
            ..
        } = &mut p.commands[at]
        {
            f(bind, params, pipeline);
        }
    };
    // A range that starts inside its buffer and runs past the end.
    let sizes: Vec<u64> = plan.buffers.iter().map(|b| b.size).collect();
    change(
        &|p| {
            in_dispatch(p, &|bind, _, _| {
                let len = sizes[bind[0].0];
                bind[0].1 = 4;
                bind[0].2 = Some(len);
            })
        },
        "do not fit buffer",
    );
    change(
        &|p| in_dispatch(p, &|bind, _, _| bind[0].1 = 2),
        "do not fit buffer",
    );
    change(
        &|p| in_dispatch(p, &|_, _, pipeline| *pipeline = 9_999),
        "no pipeline 9999",
    );
    let slot = plan.param_slot as usize;
    change(
        &|p| in_dispatch(p, &|_, params, _| params.resize(slot / 4 + 1, 0)),
        "parameter block larger than param_slot",
    );
    change(
        &|p| p.pipelines[0].shader = 9_999,
        "pipeline 0: no shader 9999",
    );
    let (a, b) = (0usize, 1usize);
    let copy = |src_offset: u64, size: u64| Command::Copy {
        src: a,
        src_offset,
        dst: b,
        dst_offset: 0,
        size,
    };
    let (len_a, len_b) = (sizes[a], sizes[b]);
    change(&|p| p.commands.push(copy(len_a, 4)), "do not fit buffer 0");
    change(
        &|p| p.commands.push(copy(0, len_b + 4)),
        "do not fit buffer",
    );
    change(
        &|p| {
            p.commands.push(Command::Clear {
                buffer: b,
                size: len_b + 4,
            })
        },
        "do not fit buffer 1",
    );
    let write = |data: Option<[u64; 2]>, input: Option<String>| Command::Write {
        buffer: b,
        data,
        input,
    };
    let weights = plan.weights_bytes;
    change(
        &|p| p.commands.push(write(Some([weights, 4]), None)),
        "outside the weights file",
    );
    change(
        &|p| p.commands.push(write(Some([0, len_b + 4]), None)),
        "do not fit buffer 1",
    );
    change(
        &|p| p.commands.push(write(None, Some("nothing".into()))),
        "no input \"nothing\"",
    );
    change(
        &|p| p.commands.push(write(None, None)),
        "either data or an input",
    );
    let name = plan.inputs[0].name.clone();
    change(
        &|p| p.commands.push(write(Some([0, 4]), Some(name.clone()))),
        "either data or an input",
    );
    change(
        &|p| p.outputs[0].bytes = sizes[p.outputs[0].buffer] + 4,
        &format!("port \"{}\"", plan.outputs[0].name),
    );
    change(&|p| p.inputs[0].buffer = 9_999, "no buffer 9999");
}
