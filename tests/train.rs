//! Training: the loss falls on a batch, a run stopped and resumed continues exactly as an
//! uninterrupted one, bad checkpoints are refused, a non-finite loss stops the run without a
//! poisoned checkpoint, and a trained checkpoint scores end to end.

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
        root: root.to_path_buf(),
        val_fraction: 0.25,
        seed: 3,
        batch: 2,
        max_steps: Some(3),
        checkpoint_every: 1,
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
            asna::train::train_step(
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

    // `asna eval` on the same labelled set: ASNA, PSNR and SSIM rows over the same pairs.
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
        ["ASNA", "PSNR", "SSIM"]
    );
    assert!(rows.iter().all(|r| r["n"] == 6));
    // PSNR falls with noise, as the labels do: a perfect rank correlation on this set.
    assert!(rows[1]["srcc"].as_f64().unwrap() > 0.6, "{rows:?}");
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
fn non_finite_loss_stops_the_run_without_a_poisoned_checkpoint() {
    let gpu = Gpu::default_adapter().unwrap();
    let root = temp_dir("data3");
    tiny_dataset(&root, 4);
    let run = temp_dir("nan");
    let mut c = config(&root);
    c.lr = 1e38; // the first update throws the weights out of range
    c.max_steps = Some(4);
    let err = train(&gpu, c.clone(), &run, false, &quiet())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("step") && (err.contains("not finite") || err.contains("NaN")),
        "{err}"
    );
    if run.join("last.safetensors").exists() {
        for (k, v) in params_of(&run.join("last.safetensors")) {
            assert!(v.iter().all(|x| x.is_finite()), "{k} poisoned");
        }
    }
    // With --skip-nonfinite the run goes on.
    let run2 = temp_dir("nan-skip");
    c.skip_nonfinite = true;
    let s = train(&gpu, c, &run2, false, &quiet());
    assert!(
        s.is_ok() || s.err().unwrap().to_string().contains("NaN"),
        "skipping keeps the run alive"
    );
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
    let meta = TensorFile::read(&last).unwrap().metadata;
    let step: u64 = meta["step"].parse().unwrap();
    assert!(step >= 1);
    let out = std::process::Command::new(bin)
        .args(args(&["--resume"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = TensorFile::read(&last).unwrap().metadata;
    assert_eq!(
        meta["step"], "4",
        "the resumed run finished the remaining steps"
    );
    assert!(run.join("best.safetensors").exists());
}
