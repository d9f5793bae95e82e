//! Scoring: single against batched, windows on pairs larger than 288, test-time variants,
//! shards, the degradation map, ensembles, and the command line end to end.

use asna::data::{Augment, Direction, LabelScaler};
use asna::gpu::Gpu;
use asna::model::checkpoint::{self, LoadedModel};
use asna::model::params::ParamStore;
use asna::rng::Rng;
use asna::score::Shard;
use asna::scorer::{window_starts, windows, Scorer};
use image::RgbImage;
use std::path::PathBuf;

fn model(gpu: &Gpu, seed: u64) -> LoadedModel {
    let store = ParamStore::init(gpu, &asna::model::asna::specs(), seed);
    LoadedModel {
        store,
        scaler: LabelScaler {
            mean: 3.0,
            std: 0.5,
            direction: Direction::HigherIsBetter,
        },
        metadata: Default::default(),
        source: "test".into(),
    }
}

fn image(rng: &mut Rng, w: u32, h: u32) -> RgbImage {
    // Smooth content plus noise, so that the pair differs in structured ways.
    RgbImage::from_fn(w, h, |x, y| {
        let base = ((x as f64 / 17.0).sin() * 60.0 + (y as f64 / 23.0).cos() * 50.0 + 128.0) as i32;
        let n = |r: &mut Rng| (r.normal() * 8.0) as i32;
        image::Rgb([
            (base + n(rng)).clamp(0, 255) as u8,
            (base / 2 + 60 + n(rng)).clamp(0, 255) as u8,
            (255 - base + n(rng)).clamp(0, 255) as u8,
        ])
    })
}

fn distort(rng: &mut Rng, img: &RgbImage, sigma: f64) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (*c as f64 + rng.normal() * sigma).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-score-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn window_layout_covers_the_image_with_overlap_at_the_edges() {
    assert_eq!(window_starts(288), vec![0]);
    assert_eq!(window_starts(300), vec![0, 12]);
    assert_eq!(window_starts(576), vec![0, 288]);
    assert_eq!(window_starts(768), vec![0, 240, 480]);
    for len in [288usize, 289, 500, 577, 1000] {
        let s = window_starts(len);
        assert_eq!(
            *s.last().unwrap() + 288,
            len,
            "last window ends at the edge"
        );
        assert!(
            s.windows(2).all(|w| w[1] > w[0] && w[1] <= w[0] + 288),
            "no gaps: {s:?}"
        );
    }
    assert_eq!(windows(300, 288).len(), 2);
}

#[test]
fn shards_partition_every_pair_exactly_once() {
    let items: Vec<usize> = (0..103).collect();
    for n in [1usize, 2, 7, 16] {
        let mut seen = vec![0; items.len()];
        for k in 0..n {
            let shard: Shard = format!("{k}/{n}").parse().unwrap();
            for i in shard.select(&items) {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "shards of {n}");
    }
    assert!("3/3".parse::<Shard>().is_err());
    assert!("a/3".parse::<Shard>().is_err());
    assert!("1/0".parse::<Shard>().is_err());
}

#[test]
fn batched_scores_equal_single_scores_and_windows_average() {
    let gpu = Gpu::default_adapter().unwrap();
    let mut rng = Rng::new(5);
    let pairs: Vec<(RgbImage, RgbImage)> = [4.0, 12.0, 30.0]
        .iter()
        .map(|&s| {
            let r = image(&mut rng, 288, 288);
            let d = distort(&mut rng, &r, s);
            (r, d)
        })
        .collect();
    let batched = Scorer::new(&gpu, vec![model(&gpu, 1)], 3, false)
        .score_pairs(&pairs, |_| {})
        .unwrap();
    let single = Scorer::new(&gpu, vec![model(&gpu, 1)], 1, false);
    for (i, p) in pairs.iter().enumerate() {
        let s = single.score_pairs(std::slice::from_ref(p), |_| {}).unwrap()[0];
        assert!(
            (s - batched[i]).abs() < 1e-4,
            "pair {i}: single {s} batched {}",
            batched[i]
        );
    }

    // A 300x288 pair is the mean of its two windows.
    let r = image(&mut rng, 300, 288);
    let d = distort(&mut rng, &r, 10.0);
    let whole = single
        .score_pairs(&[(r.clone(), d.clone())], |_| {})
        .unwrap()[0];
    let crop = |img: &RgbImage, x: u32| image::imageops::crop_imm(img, x, 0, 288, 288).to_image();
    let w0 = single
        .score_pairs(&[(crop(&r, 0), crop(&d, 0))], |_| {})
        .unwrap()[0];
    let w1 = single
        .score_pairs(&[(crop(&r, 12), crop(&d, 12))], |_| {})
        .unwrap()[0];
    assert!(
        (whole - (w0 + w1) / 2.0).abs() < 1e-4,
        "window mean {whole} vs {w0}, {w1}"
    );

    // An ensemble averages its members.
    let ens = Scorer::new(&gpu, vec![model(&gpu, 1), model(&gpu, 2)], 3, false)
        .score_pairs(&pairs[..1], |_| {})
        .unwrap()[0];
    let other = Scorer::new(&gpu, vec![model(&gpu, 2)], 3, false)
        .score_pairs(&pairs[..1], |_| {})
        .unwrap()[0];
    assert!((ens - (batched[0] + other) / 2.0).abs() < 1e-4);

    // Smaller than 288: refused.
    let small = image(&mut rng, 200, 288);
    let err = single
        .score_pairs(&[(small.clone(), small)], |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("smaller than"), "{err}");
}

/// Pairs that share references (as in PIPAL, KADID-10k and TID2013 lists) score exactly as
/// when every pair runs the encoder on its own reference, in two batch layouts: several
/// references per batch with repeats far apart (batch 3), and one batch of everything,
/// including the two windows of a larger image.
#[test]
fn shared_references_score_exactly_as_unshared() {
    let gpu = Gpu::default_adapter().unwrap();
    let mut rng = Rng::new(9);
    let refs: Vec<RgbImage> = (0..3).map(|_| image(&mut rng, 288, 288)).collect();
    let wide = image(&mut rng, 300, 288);
    let mut pairs: Vec<(RgbImage, RgbImage)> = Vec::new();
    for (i, sigma) in [3.0, 8.0, 20.0, 5.0, 12.0, 30.0].into_iter().enumerate() {
        let r = &refs[[0, 0, 1, 0, 2, 1][i]];
        pairs.push((r.clone(), distort(&mut rng, r, sigma)));
    }
    pairs.push((wide.clone(), distort(&mut rng, &wide, 6.0)));
    for batch in [3, 16] {
        let shared = Scorer::new(&gpu, vec![model(&gpu, 4)], batch, false);
        assert!(shared.share_references, "on by default");
        let mut unshared = Scorer::new(&gpu, vec![model(&gpu, 4)], batch, false);
        unshared.share_references = false;
        let a = shared.score_pairs(&pairs, |_| {}).unwrap();
        let b = unshared.score_pairs(&pairs, |_| {}).unwrap();
        assert_eq!(a, b, "batch {batch}: shared and unshared references differ");
    }
}

#[test]
fn test_time_augmentation_is_the_mean_of_its_variants() {
    let gpu = Gpu::default_adapter().unwrap();
    let mut rng = Rng::new(6);
    let r = image(&mut rng, 288, 288);
    let d = distort(&mut rng, &r, 15.0);
    let tta = Scorer::new(&gpu, vec![model(&gpu, 3)], 16, true)
        .score_pairs(&[(r.clone(), d.clone())], |_| {})
        .unwrap()[0];
    let plain = Scorer::new(&gpu, vec![model(&gpu, 3)], 16, false);
    let variants = asna::data::tta_variants();
    assert_eq!(variants.len(), 22);
    let pairs: Vec<(RgbImage, RgbImage)> = variants
        .iter()
        .map(|v: &Augment| v.apply_pair(&r, &d))
        .collect();
    let each = plain.score_pairs(&pairs, |_| {}).unwrap();
    let mean = each.iter().sum::<f64>() / each.len() as f64;
    assert!((tta - mean).abs() < 1e-4, "tta {tta} vs mean {mean}");
}

#[test]
fn command_line_scores_lists_maps_and_writes_atomically() {
    let gpu = Gpu::default_adapter().unwrap();
    let dir = temp_dir("cli");
    let m = model(&gpu, 4);
    let weights = dir.join("m.safetensors");
    checkpoint::save(
        &gpu,
        &weights,
        &m.store,
        None,
        &checkpoint::model_metadata(&m.scaler),
    )
    .unwrap();
    let mut rng = Rng::new(7);
    let r = image(&mut rng, 300, 290);
    let d = distort(&mut rng, &r, 9.0);
    r.save(dir.join("r.png")).unwrap();
    d.save(dir.join("d.png")).unwrap();
    std::fs::write(dir.join("list.csv"), "ref,dist\nr.png,d.png\nr.png,r.png\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_asna");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();

    let out = run(&[
        "score",
        dir.join("r.png").to_str().unwrap(),
        dir.join("d.png").to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let single: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    let csv_out = dir.join("scores.csv");
    let out = run(&[
        "score",
        "--pairs",
        dir.join("list.csv").to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        csv_out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv_out).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "ref,dist,score");
    assert_eq!(rows.len(), 3);
    let listed: f64 = rows[1].rsplit(',').next().unwrap().parse().unwrap();
    assert!(
        (listed - single).abs() < 1e-3,
        "list {listed} vs single {single}"
    );

    let json_out = dir.join("scores.json");
    let out = run(&[
        "score",
        "--pairs",
        dir.join("list.csv").to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--format",
        "json",
        "--out",
        json_out.to_str().unwrap(),
        "--shard",
        "1/2",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "shard 1/2 of two pairs holds one"
    );

    let map = dir.join("map.png");
    let out = run(&[
        "score",
        dir.join("r.png").to_str().unwrap(),
        dir.join("d.png").to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--map",
        map.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&map).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (300, 290),
        "the map has the input's size"
    );

    // A failing list leaves no output file behind.
    std::fs::write(
        dir.join("bad.csv"),
        "ref,dist\nr.png,d.png\nr.png,missing.png\n",
    )
    .unwrap();
    let bad_out = dir.join("bad-out.csv");
    let out = run(&[
        "score",
        "--pairs",
        dir.join("bad.csv").to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.png") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!bad_out.exists(), "no half-written output");
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial")),
        "temporary file removed"
    );
}
