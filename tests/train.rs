//! Training: the loss falls on a batch, a run stopped and resumed continues exactly as an
//! uninterrupted one (with precise batch norm), its saved statistics are the mean over the
//! precise-BN batches, bad checkpoints are refused, a non-finite loss stops the run without a
//! poisoned checkpoint, a trained checkpoint scores end to end, the learning-rate schedule, and
//! `asna plot-run` draws a run's learning curve.

use asna::data::{Batch, Direction, LabelScaler};
use asna::gpu::Gpu;
use asna::model::asna::specs;
use asna::model::params::ParamStore;
use asna::model::weights::TensorFile;
use asna::rng::Rng;
use asna::train::{train, TrainConfig, TrainOptions};
use image::RgbImage;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn photo(rng: &mut Rng, seed: f64) -> RgbImage {
    RgbImage::from_fn(300, 292, |x, y| {
        let v = ((x as f64 / (9.0 + seed)).sin() * 70.0
            + (y as f64 / (13.0 + seed)).cos() * 40.0
            + 128.0) as i32;
        let n = (rng.normal() * 3.0) as i32;
        image::Rgb([
            (v + n).clamp(0, 255) as u8,
            (v / 2 + 50).clamp(0, 255) as u8,
            (230 - v / 2 + n).clamp(0, 255) as u8,
        ])
    })
}

/// A labelled set in the generic CSV format: `refs` references, each with noise at three
/// strengths, labelled 5 - sigma / 10 (quality falls with noise).
fn tiny_dataset(dir: &Path, refs: usize) {
    let mut rng = Rng::new(11);
    let mut csv = String::from("dis_img_path,dis_type,ref_img_path,score\n");
    for r in 0..refs {
        let img = photo(&mut rng, r as f64 * 3.0);
        img.save(dir.join(format!("ref{r}.png"))).unwrap();
        for sigma in [3.0, 15.0, 35.0] {
            let mut d = img.clone();
            for p in d.pixels_mut() {
                for c in p.0.iter_mut() {
                    *c = (*c as f64 + rng.normal() * sigma).round().clamp(0.0, 255.0) as u8;
                }
            }
            let name = format!("ref{r}_n{}.png", sigma as u32);
            d.save(dir.join(&name)).unwrap();
            csv.push_str(&format!("{name},noise,ref{r}.png,{}\n", 5.0 - sigma / 10.0));
        }
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

fn config(root: &Path) -> TrainConfig {
    let mut c = TrainConfig {
        root: Some(root.to_path_buf()),
        val_fraction: 0.25,
        seed: 3,
        batch: 2,
        max_steps: Some(3),
        checkpoint_every: 1,
        precise_bn: 2,
        ..Default::default()
    };
    c.loss.rank = 0.0; // batches of 2: the sorter needs 16
    c.lr = 1e-3;
    c
}

fn quiet() -> TrainOptions {
    TrainOptions {
        workers: 2,
        progress_bar: false,
    }
}

fn params_of(path: &Path) -> Vec<(String, Vec<f32>)> {
    let f = TensorFile::read(path).unwrap();
    f.floats
        .into_iter()
        .filter(|(k, _)| !k.starts_with("adam."))
        .map(|(k, (_, v))| (k, v))
        .collect()
}

#[test]
fn loss_falls_when_training_on_a_batch() {
    let gpu = Gpu::default_adapter().unwrap();
    let mut store = ParamStore::init(&gpu, &specs(), 1);
    let sorter = ParamStore::init(&gpu, &asna::model::sorter::specs(), 2);
    let mut adam = asna::optim::Adam::new(Default::default());
    let mut rng = Rng::new(4);
    let n = 4;
    let px = |rng: &mut Rng| {
        (0..n * 288 * 288 * 3)
            .map(|_| rng.below(256) as u8)
            .collect::<Vec<u8>>()
    };
    let batch = Batch {
        ref_u8: px(&mut rng),
        dist_u8: px(&mut rng),
        targets: vec![1.0, -1.0, 0.5, -0.5],
        indices: (0..n).collect(),
        n,
        size: 288,
    };
    let w = asna::model::loss::LossWeights {
        rank: 0.0,
        ..Default::default()
    };
    let mut losses = Vec::new();
    let mut pool = Vec::new();
    for i in 0..4 {
        losses.push(
            asna::optim::train_step(
                &gpu,
                &mut store,
                &mut adam,
                Some(&sorter),
                &w,
                &batch,
                1e-3,
                i,
                false,
            )
            .unwrap()
            .unwrap(),
        );
        pool.push((gpu.pool_allocated_bytes(), gpu.pool_allocations()));
    }
    assert!(losses[3] < losses[0] * 0.8, "loss should fall: {losses:?}");
    // Saved activations go back to the pool after each step: from the second step on, every
    // buffer is reused and GPU memory stops growing.
    assert_eq!(
        pool[1], pool[3],
        "the buffer pool grew after the second step: {pool:?}"
    );
}

#[test]
fn resumed_run_continues_exactly_and_its_checkpoint_scores() {
    let gpu = Gpu::default_adapter().unwrap();
    let root = temp_dir("data");
    tiny_dataset(&root, 4);
    // Uninterrupted: 3 steps.
    let full = temp_dir("full");
    let a = train(&gpu, config(&root), &full, false, &quiet()).unwrap();
    assert_eq!(a.steps, 3);
    // Stopped after step 2, then resumed for step 3.
    let split = temp_dir("split");
    let mut c = config(&root);
    c.max_steps = Some(2);
    let b1 = train(&gpu, c, &split, false, &quiet()).unwrap();
    assert_eq!(b1.losses[..], a.losses[..2], "the same first two steps");
    let b2 = train(&gpu, config(&root), &split, true, &quiet()).unwrap();
    assert_eq!(b2.steps, 3);
    assert_eq!(b2.losses, vec![a.losses[2]], "step 3 loss after resuming");
    let (pa, pb) = (
        params_of(&full.join("last.safetensors")),
        params_of(&split.join("last.safetensors")),
    );
    assert_eq!(pa.len(), pb.len());
    for ((ka, va), (kb, vb)) in pa.iter().zip(&pb) {
        assert_eq!(ka, kb);
        assert!(va == vb, "{ka} differs after resume");
    }
    precise_statistics_are_the_mean_over_their_batches(&gpu, &root, &full.join("last.safetensors"));
    // The baselines of the validation pairs, for plot-run: noise ranks PSNR, MS-SSIM and GMSD
    // (negated) perfectly here.
    let baselines: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("baselines.json")).unwrap())
            .unwrap();
    assert_eq!(baselines["val_pairs"], 3);
    assert!(
        baselines["psnr"]["srcc"].as_f64().unwrap() > 0.6,
        "{baselines}"
    );
    assert!(baselines["ssim"]["srcc"].is_number(), "{baselines}");
    assert!(
        baselines["gmsd"]["srcc"].as_f64().unwrap() > 0.6,
        "{baselines}"
    );
    assert!(
        baselines["ms_ssim"]["srcc"].as_f64().unwrap() > 0.6,
        "{baselines}"
    );

    // Starting over in a used directory without --resume is refused.
    let err = train(&gpu, config(&root), &full, false, &quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--resume"), "{err}");

    // The trained checkpoint (a run directory or its file) scores a pair from the command line.
    let bin = env!("CARGO_BIN_EXE_asna");
    let out = std::process::Command::new(bin)
        .args([
            "score",
            root.join("ref0.png").to_str().unwrap(),
            root.join("ref0_n15.png").to_str().unwrap(),
            "--weights",
            full.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let score: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(score.is_finite());
    let meta = TensorFile::read(&full.join("best.safetensors"))
        .unwrap()
        .metadata;
    assert_eq!(meta["label_direction"], "higher");
    let scaler = LabelScaler {
        mean: meta["label_mean"].parse().unwrap(),
        std: meta["label_std"].parse().unwrap(),
        direction: Direction::HigherIsBetter,
    };
    assert!(
        scaler.std > 0.0 && (3.0..4.5).contains(&scaler.mean),
        "label statistics stored: {scaler:?}"
    );
    assert!(
        std::fs::read_to_string(full.join("metrics.jsonl"))
            .unwrap()
            .contains("\"srcc\""),
        "validation metrics logged"
    );

    // `asna eval` on the same labelled set: ASNA and the baselines' rows over the same pairs.
    let out = std::process::Command::new(bin)
        .args([
            "eval",
            "--dataset",
            "csv",
            "--root",
            root.to_str().unwrap(),
            "--weights",
            full.to_str().unwrap(),
            "--json",
            "--limit",
            "6",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["method"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ASNA", "PSNR", "SSIM", "MS-SSIM", "GMSD"]
    );
    assert!(rows.iter().all(|r| r["n"] == 6));
    // PSNR and MS-SSIM fall with noise, as the labels do, and GMSD rises (its row is
    // negated): a perfect rank correlation on this set.
    for row in [1, 3, 4] {
        assert!(rows[row]["srcc"].as_f64().unwrap() > 0.6, "{rows:?}");
    }
}

#[test]
fn missing_or_corrupt_checkpoints_are_refused() {
    let gpu = Gpu::default_adapter().unwrap();
    let root = temp_dir("data2");
    tiny_dataset(&root, 2);
    let empty = temp_dir("empty");
    let err = train(&gpu, config(&root), &empty, true, &quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("last.safetensors") && err.contains("no checkpoint"),
        "{err}"
    );
    let corrupt = temp_dir("corrupt");
    std::fs::write(
        corrupt.join("last.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .unwrap();
    let err = train(&gpu, config(&root), &corrupt, true, &quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("last.safetensors"), "{err}");
}

#[test]
fn resume_refuses_a_stored_configuration_out_of_range() {
    let gpu = Gpu::default_adapter().unwrap();
    let root = temp_dir("data_ranges");
    tiny_dataset(&root, 2);
    let run = temp_dir("ranges");
    let mut c = config(&root);
    c.max_steps = Some(1);
    train(&gpu, c.clone(), &run, false, &quiet()).unwrap();
    // The checkpoint's header, with its stored batch size rewritten to 0.
    let last = run.join("last.safetensors");
    let bytes = std::fs::read(&last).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let stored = "\\\"batch\\\":2,";
    assert!(header.contains(stored), "{header}");
    let header = header.replace(stored, "\\\"batch\\\":0,");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&last, out).unwrap();
    c.max_steps = Some(2);
    let err = train(&gpu, c, &run, true, &quiet())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("last.safetensors")
            && err.contains("stored training configuration is invalid")
            && err.contains("--batch must be a number from 1"),
        "{err}"
    );
}

#[test]
fn non_finite_loss_stops_the_run_without_a_poisoned_checkpoint() {
    let gpu = Gpu::default_adapter().unwrap();
    let root = temp_dir("data3");
    tiny_dataset(&root, 4);
    let run = temp_dir("nan");
    let mut c = config(&root);
    c.lr = 1e38; // the first update throws the weights out of range
    c.max_steps = Some(4);
    c.checkpoint_every = 100;
    let err = train(&gpu, c.clone(), &run, false, &quiet())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // The first update throws the weights out of range; the second step's loss is then not
    // finite, and the run stops there without saving them.
    assert!(
        err.contains("step 2: the loss is not finite") && err.contains("stopped without saving"),
        "{err}"
    );
    assert!(
        !run.join("last.safetensors").exists(),
        "a checkpoint of diverged weights was written"
    );
    // --skip-nonfinite is for a bad batch, not for diverged weights: the step-level test
    // below holds it.
}

/// One step on a batch whose loss is not finite: refused with a message naming the step,
/// or, when skipping, skipped without touching a parameter or a running statistic.
#[test]
fn a_non_finite_batch_is_refused_or_skipped_without_an_update() {
    let gpu = Gpu::default_adapter().unwrap();
    let mut store = ParamStore::init(&gpu, &specs(), 1);
    let mut adam = asna::optim::Adam::new(Default::default());
    let mut rng = Rng::new(4);
    let n = 2;
    let px: Vec<u8> = (0..n * 288 * 288 * 3)
        .map(|_| rng.below(256) as u8)
        .collect();
    let batch = Batch {
        ref_u8: px.clone(),
        dist_u8: px.iter().map(|v| v / 2).collect(),
        targets: vec![0.5, f32::NAN],
        indices: (0..n).collect(),
        n,
        size: 288,
    };
    let w = asna::model::loss::LossWeights {
        rank: 0.0,
        ..Default::default()
    };
    let snapshot = |store: &ParamStore| -> Vec<Vec<f32>> {
        store
            .specs
            .iter()
            .map(|s| gpu.download(store.get(&s.name)).unwrap())
            .collect()
    };
    let before = snapshot(&store);
    let mut step = |skip: bool| {
        asna::optim::train_step(&gpu, &mut store, &mut adam, None, &w, &batch, 1e-3, 6, skip)
    };
    let err = step(false).unwrap_err().to_string();
    assert!(
        err.contains("step 7") && err.contains("not finite"),
        "{err}"
    );
    assert_eq!(step(true).unwrap(), None, "the batch is skipped");
    assert!(
        snapshot(&store) == before,
        "a skipped batch changed the model"
    );
    // The same batch with finite targets does update it (the check above can fail).
    let mut finite = batch.clone();
    finite.targets = vec![0.5, -0.5];
    let loss = asna::optim::train_step(
        &gpu, &mut store, &mut adam, None, &w, &finite, 1e-3, 7, true,
    )
    .unwrap();
    assert!(loss.is_some_and(f32::is_finite));
    assert!(snapshot(&store) != before);
}

#[test]
fn killed_run_resumes_from_its_last_checkpoint() {
    let root = temp_dir("data4");
    tiny_dataset(&root, 3);
    let run = temp_dir("killed");
    let bin = env!("CARGO_BIN_EXE_asna");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "train",
            "--dataset",
            "csv",
            "--root",
            root.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in [
            "--batch",
            "2",
            "--rank-weight",
            "0",
            "--checkpoint-every",
            "1",
            "--max-steps",
            "4",
            "--val-fraction",
            "0.34",
            "--precise-bn",
            "2",
            "--warmup-steps",
            "2",
            "--lr-schedule",
            "cosine",
            "--quiet",
        ] {
            v.push(a.to_string());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut child = std::process::Command::new(bin)
        .args(args(&[]))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let last = run.join("last.safetensors");
    let started = std::time::Instant::now();
    while !last.exists() {
        assert!(started.elapsed().as_secs() < 300, "no checkpoint appeared");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("training ended before it could be killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // Whatever the moment of the kill, the last checkpoint is complete and loadable.
    let mut file = TensorFile::read(&last).unwrap();
    let step: u64 = file.metadata["step"].parse().unwrap();
    assert!((1..4).contains(&step), "killed at step {step}");
    // Mark the checkpoint: a run that resumes from it carries the mark to the end, one that
    // silently started over from its seed does not.
    const MARK: f32 = 1234.5;
    file.floats.get_mut("head.fc3.bias").unwrap().1 = vec![MARK];
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .floats
        .iter()
        .map(|(k, (s, v))| (k.clone(), s.clone(), v.clone()))
        .collect();
    assert!(file.bytes.is_empty(), "checkpoints hold floats only");
    std::fs::write(
        &last,
        asna::model::weights::serialize(&tensors, &file.metadata).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(args(&["--resume"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = TensorFile::read(&last).unwrap();
    assert_eq!(
        resumed.metadata["step"], "4",
        "the resumed run finished the remaining steps"
    );
    let bias = resumed.float("head.fc3.bias").unwrap().1[0];
    assert!(
        (bias - MARK).abs() < 0.1,
        "the resumed run did not continue from its checkpoint (head.fc3.bias {bias})"
    );
    assert!(run.join("best.safetensors").exists());
}

/// The batch-norm statistics saved in `checkpoint` (a run of `config(root)` with precise BN)
/// are the mean, over the precise-BN batches, of the batch statistics of training-mode
/// forwards of its weights; the running statistics saved beside them differ.
fn precise_statistics_are_the_mean_over_their_batches(gpu: &Gpu, root: &Path, checkpoint: &Path) {
    use asna::autograd::Tape;
    use asna::model::asna::{forward, stacked_input, BnContext, Bound};
    let cfg = config(root);
    let file = TensorFile::read(checkpoint).unwrap();
    assert!(
        file.metadata["bn_statistics"].starts_with("precise"),
        "{}",
        file.metadata["bn_statistics"]
    );
    let mut store =
        ParamStore::from_file_tensors(gpu, &specs(), |n| file.float(n), "checkpoint").unwrap();
    // Forward with the running statistics in place, as training does; each layer's update is
    // then 0.99 running + 0.01 batch, from which the batch statistic is recovered.
    let running: Vec<String> = store
        .specs
        .iter()
        .filter(|s| !s.trainable)
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(running.len(), 22);
    let mut differs = false;
    for name in &running {
        let (_, ema) = file.float(&format!("running.{name}")).unwrap();
        differs |= ema != file.float(name).unwrap().1;
        store.set(name, gpu.upload(&[ema.len()], &ema));
    }
    assert!(differs, "precise statistics equal the running ones");
    let ds = asna::data::open_dataset(asna::data::DatasetFormat::Csv, root, None, None).unwrap();
    let (train_idx, _) = asna::data::split_by_reference(&ds.pairs, cfg.val_fraction, cfg.seed);
    let pairs = asna::train::precise_bn_pairs(&train_idx, cfg.batch, cfg.precise_bn, cfg.seed);
    assert_eq!(pairs.len(), cfg.precise_bn * cfg.batch);
    let loader = asna::data::BatchLoader::new(
        std::sync::Arc::new(ds.pairs.clone()),
        pairs,
        std::sync::Arc::new(vec![0.0; ds.pairs.len()]),
        asna::train::precise_bn_loader(cfg.batch, 0),
        0,
        0,
    );
    let m = asna::ops::batchnorm::MOMENTUM as f64;
    let mut sums: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for b in loader {
        let b = b.unwrap();
        let mut tape = Tape::new(gpu);
        let params = Bound::new(&mut tape, &store, false);
        let x = stacked_input(
            &mut tape,
            &b.ref_u8,
            &b.dist_u8,
            b.n,
            b.size,
            asna::gpu::DType::F32,
        );
        let mut bn = BnContext::train(&store);
        forward(&mut tape, &params, &mut bn, &x, None);
        for (name, t) in std::mem::take(&mut bn.updates) {
            let upd = gpu.download(&t).unwrap();
            let old = gpu.download(store.get(&name)).unwrap();
            let acc = sums.entry(name).or_insert_with(|| vec![0.0; upd.len()]);
            for ((a, u), o) in acc.iter_mut().zip(&upd).zip(&old) {
                *a += (*u as f64 - m * *o as f64) / (1.0 - m) / cfg.precise_bn as f64;
            }
        }
    }
    assert_eq!(sums.len(), running.len());
    for (name, want) in &sums {
        let (_, got) = file.float(name).unwrap();
        let (_, ema) = file.float(&format!("running.{name}")).unwrap();
        for ((g, w), e) in got.iter().zip(want).zip(&ema) {
            // The recovery through the update loses about 1e-5 of the running value.
            let tol = 1e-4 * (w.abs() + (*e as f64).abs()) + 1e-6;
            assert!(
                (*g as f64 - w).abs() <= tol,
                "{name}: saved {g}, mean of batches {w}"
            );
        }
    }
}

/// The steps of a run's `metrics.jsonl` and the step `best.safetensors` was saved at.
fn validated_steps(run: &Path) -> (Vec<(u64, f64)>, u64) {
    let rows = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                v["main_score"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let meta = TensorFile::read(&run.join("best.safetensors"))
        .unwrap()
        .metadata;
    let progress: serde_json::Value = serde_json::from_str(&meta["progress"]).unwrap();
    (rows, progress["step"].as_u64().unwrap())
}

#[test]
fn validation_every_n_steps_keeps_the_best_checkpoint() {
    let gpu = Gpu::default_adapter().unwrap();
    let root = temp_dir("data5");
    tiny_dataset(&root, 4); // 9 training pairs: 4 batches of 2 an epoch
    let run = temp_dir("val-every");
    let mut c = config(&root);
    c.val_every = 2;
    c.checkpoint_every = 100;
    c.max_steps = Some(3);
    train(&gpu, c.clone(), &run, false, &quiet()).unwrap();
    // Step 2 by --val-every, step 3 because the run stopped there.
    let (rows, best_step) = validated_steps(&run);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3]);
    assert!(
        rows.iter().all(|r| r.1.is_finite()) && rows[0].1 != rows[1].1,
        "two validations with different scores are needed to tell the best: {rows:?}"
    );
    let best = rows.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(
        best_step, best.0,
        "best.safetensors is the best validated model: {rows:?}"
    );
    // Resumed to step 4, which ends the epoch and is a --val-every step: validated once.
    c.max_steps = Some(4);
    train(&gpu, c, &run, true, &quiet()).unwrap();
    let (rows, best_step) = validated_steps(&run);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3, 4]);
    // An unscorable validation (NaN: constant predictions on three pairs) never replaces
    // the best; here step 4's is one, after step 3 had the best score.
    let best = rows
        .iter()
        .filter(|r| r.1.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_ne!(best.0, 4, "the best is not the last validation: {rows:?}");
    assert_eq!(
        best_step, best.0,
        "after resuming, best.safetensors is still the best validated model: {rows:?}"
    );
}

#[test]
fn learning_rate_warms_up_and_follows_its_schedule() {
    use asna::train::{lr_at, LrSchedule};
    let mut c = TrainConfig {
        lr: 1e-3,
        lr_decay_epoch: 2,
        ..Default::default()
    };
    // Step schedule without warm-up: the old behaviour, bit for bit.
    assert_eq!(lr_at(&c, 0, 0), 1e-3);
    assert_eq!(lr_at(&c, 500, 1), 1e-3);
    assert_eq!(lr_at(&c, 501, 2), 1e-3f32 * 0.1);
    // Linear warm-up from 0: step k (from 0) at (k + 1) / warmup of the rate.
    c.warmup_steps = 4;
    let warm: Vec<f32> = (0..6).map(|k| lr_at(&c, k, 0)).collect();
    let want = [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3];
    for (g, w) in warm.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{warm:?}");
    }
    // Cosine from the warm-up's end to 0 at the run's last step.
    c.lr_schedule = LrSchedule::Cosine;
    c.schedule_steps = 104;
    assert!((lr_at(&c, 4, 0) - 1e-3).abs() < 1e-9);
    assert!((lr_at(&c, 54, 3) - 0.5e-3).abs() < 1e-9, "half way");
    assert!(lr_at(&c, 103, 9) < 1e-6 && lr_at(&c, 103, 9) > 0.0);
    assert_eq!(lr_at(&c, 104, 9), 0.0);
    assert_eq!(lr_at(&c, 500, 9), 0.0, "past the end");
    let curve: Vec<f32> = (4..104).map(|k| lr_at(&c, k, 0)).collect();
    assert!(curve.windows(2).all(|w| w[1] < w[0]), "falls monotonically");
    // During the warm-up the cosine's start is ramped.
    assert!((lr_at(&c, 1, 0) - 0.5e-3).abs() < 1e-9);

    // Checkpoints from before these options resume as they were trained: no precise BN, no
    // warm-up, the step schedule.
    let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
    for k in [
        "precise_bn",
        "warmup_steps",
        "lr_schedule",
        "schedule_steps",
        "val_every",
    ] {
        old.as_object_mut().unwrap().remove(k).unwrap();
    }
    let c: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(
        (
            c.precise_bn,
            c.warmup_steps,
            c.lr_schedule,
            c.schedule_steps,
            c.val_every
        ),
        (0, 0, LrSchedule::Step, 0, 0)
    );
    assert_eq!(
        TrainConfig::default().precise_bn,
        asna::train::DEFAULT_PRECISE_BN
    );
}

#[test]
fn defaults_are_the_command_lines_and_old_configurations_read_back() {
    use asna::model::loss::LossWeights;
    use asna::train::LrSchedule;
    // TrainConfig::default() is the command line with nothing given.
    let d = TrainConfig::default();
    let want = TrainConfig {
        dataset: "csv".into(),
        root: None,
        labels: None,
        direction: None,
        epochs: 20,
        max_steps: None,
        loss: LossWeights {
            mse: 1.0,
            rank: 0.01,
            l2_conv: 1e-4,
            l2_dense: 1e-6,
        },
        lr: 1e-4,
        batch: 16,
        lr_decay_epoch: 10,
        lr_decay: 0.1,
        lr_schedule: LrSchedule::Step,
        warmup_steps: 0,
        precise_bn: 10,
        val_fraction: 0.2,
        seed: 0,
        augment: true,
        checkpoint_every: 200,
        val_every: 0,
        skip_nonfinite: false,
        sorter: None,
        init: None,
        schedule_steps: 0,
    };
    assert_eq!(d, want);
    assert_eq!(d.loss, LossWeights::default());

    // A configuration as checkpoints have stored it since the first ones.
    let stored = r#"{"dataset":"kadid","root":"/data/kadid","labels":null,"direction":"higher",
        "val_fraction":0.1,"seed":5,"epochs":3,"max_steps":7,"batch":16,
        "loss":{"mse":0.5,"rank":0.0,"l2_conv":0.0001,"l2_dense":1e-6},"lr":0.001,
        "lr_decay_epoch":2,"lr_decay":0.1,"augment":false,"checkpoint_every":1,
        "skip_nonfinite":true,"sorter":null,"init":"/w/init.safetensors","precise_bn":4,
        "warmup_steps":2,"lr_schedule":"cosine","schedule_steps":21,"val_every":5}"#;
    let c: TrainConfig = serde_json::from_str(stored).unwrap();
    assert_eq!(c.root.as_deref(), Some(Path::new("/data/kadid")));
    assert_eq!(
        (c.loss.mse, c.augment, c.lr_schedule, c.schedule_steps),
        (0.5, false, LrSchedule::Cosine, 21)
    );
    let again: TrainConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn plot_run_draws_the_learning_curve_and_prints_its_table() {
    let bin = env!("CARGO_BIN_EXE_asna");
    let run = temp_dir("plot-run");
    let plot = |dir: &Path, out: Option<&Path>| {
        let mut c = std::process::Command::new(bin);
        c.args(["plot-run", dir.to_str().unwrap()])
            .env_remove("RUST_BACKTRACE");
        if let Some(o) = out {
            c.args(["--out", o.to_str().unwrap()]);
        }
        c.output().unwrap()
    };
    // Three validations (one of constant predictions: null correlations), one logged twice
    // after a resume, and a line of a run without validation pairs.
    std::fs::write(
        run.join("metrics.jsonl"),
        concat!(
            "{\"epoch\":1,\"step\":100,\"train_loss\":0.9,\"val_pairs\":340,\"plcc\":null,\"srcc\":null,\"krcc\":null,\"main_score\":null}\n",
            "{\"epoch\":2,\"step\":200,\"train_loss\":0.7,\"val_pairs\":340,\"plcc\":0.5,\"srcc\":0.4,\"krcc\":0.3,\"main_score\":0.9}\n",
            "{\"epoch\":2,\"step\":200,\"train_loss\":0.7,\"val_pairs\":340,\"plcc\":0.55,\"srcc\":0.45,\"krcc\":0.3,\"main_score\":1.0}\n",
            "{\"epoch\":3,\"step\":300,\"train_loss\":0.5,\"val_pairs\":340,\"plcc\":0.8,\"srcc\":0.78,\"krcc\":0.6,\"main_score\":1.58}\n",
            "\n",
            "{\"epoch\":4,\"step\":400,\"train_loss\":0.5,\"main_score\":null}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        run.join("baselines.json"),
        r#"{"val_pairs": 340, "psnr": {"plcc": 0.739, "srcc": 0.74, "krcc": 0.542}, "ssim": {"plcc": 0.57, "srcc": 0.525, "krcc": 0.374}}"#,
    )
    .unwrap();
    let out = plot(&run, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(run.join("curve.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), asna::plot::LINE_CHART_SIZE);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2 + 3 + 2, "{table}");
    assert!(
        rows[0].starts_with("| step | epoch | PLCC | SRCC |"),
        "{table}"
    );
    assert_eq!(rows[2], "| 100 | 1 | n/a | n/a | n/a | n/a |");
    assert_eq!(rows[3], "| 200 | 2 | 0.550 | 0.450 | -0.290 | -0.075 |");
    assert_eq!(rows[4], "| 300 | 3 | 0.800 | 0.780 | +0.040 | +0.255 |");
    assert_eq!(rows[5], "| PSNR | | | 0.740 | | |");
    assert_eq!(rows[6], "| SSIM | | | 0.525 | | |");
    // A run with all four baselines: a margin column and a row for each, in the file's order
    // of methods whatever the key order.
    std::fs::write(
        run.join("baselines.json"),
        r#"{"val_pairs": 340, "gmsd": {"srcc": 0.81}, "ms_ssim": {"srcc": 0.79}, "psnr": {"srcc": 0.74}, "ssim": {"srcc": 0.525}}"#,
    )
    .unwrap();
    let out = plot(&run, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2 + 3 + 4, "{table}");
    assert_eq!(
        rows[0],
        "| step | epoch | PLCC | SRCC | SRCC - PSNR's | SRCC - SSIM's | SRCC - MS-SSIM's | SRCC - GMSD's |"
    );
    assert_eq!(
        rows[4],
        "| 300 | 3 | 0.800 | 0.780 | +0.040 | +0.255 | -0.010 | -0.030 |"
    );
    assert_eq!(rows[7], "| MS-SSIM | | | 0.790 | | | | |");
    assert_eq!(rows[8], "| GMSD | | | 0.810 | | | | |");
    // --out elsewhere; no temporary file left behind; without baselines.json, a note.
    std::fs::remove_file(run.join("baselines.json")).unwrap();
    let other = run.join("sub").join("curve of run.png");
    let out = plot(&run, Some(&other));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        image::open(&other).unwrap().to_rgb8().dimensions(),
        asna::plot::LINE_CHART_SIZE
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("baselines.json"));
    let leftovers: Vec<_> = std::fs::read_dir(run.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // Errors: one line naming the file and the problem, status 1, no PNG.
    let bad = temp_dir("plot-run-bad");
    for (content, want) in [
        (None, "cannot read"),
        (Some(""), "empty"),
        (
            Some("{\"step\":1,\"srcc\":0.5,\"plcc\":0.5}\n{\"step\":2,\"srcc\":0."),
            "line 2: not JSON",
        ),
        (
            Some("{\"epoch\":1,\"train_loss\":0.5}\n"),
            "line 1: no \"step\"",
        ),
        (
            Some("{\"step\":3,\"srcc\":\"high\",\"plcc\":0.5}\n"),
            "\"srcc\" is not a number",
        ),
        (
            Some("{\"step\":1,\"main_score\":null}\n"),
            "no validation metrics",
        ),
    ] {
        let _ = std::fs::remove_file(bad.join("metrics.jsonl"));
        if let Some(c) = content {
            std::fs::write(bad.join("metrics.jsonl"), c).unwrap();
        }
        let out = plot(&bad, None);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("metrics.jsonl") && err.contains(want),
            "{want}: {err}"
        );
        assert!(!bad.join("curve.png").exists());
    }
}
