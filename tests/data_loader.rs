//! Batch loader: determinism across worker counts, resume, packing, errors, early drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asna::data::{
    center_crop_pair, epoch_order, load_pair, num_batches, Batch, BatchLoader, LoaderConfig,
    PairRecord,
};
use asna::rng::Rng;
use image::RgbImage;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-test-loader-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// `n` pairs of `w` x `h` random PNGs (reference and a noisier distorted copy).
fn make_pairs(dir: &Path, n: usize, w: u32, h: u32) -> Vec<PairRecord> {
    let mut rng = Rng::new(99);
    (0..n)
        .map(|i| {
            let r = RgbImage::from_fn(w, h, |_, _| {
                image::Rgb([
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                ])
            });
            let d = RgbImage::from_fn(w, h, |x, y| {
                let p = r.get_pixel(x, y).0;
                image::Rgb([p[0] / 2, p[1], 255 - p[2]])
            });
            let rp = dir.join(format!("r{i}.png"));
            let dp = dir.join(format!("d{i}.png"));
            r.save(&rp).unwrap();
            d.save(&dp).unwrap();
            PairRecord {
                ref_path: rp,
                dist_path: dp,
                score: i as f64,
                dis_type: String::new(),
                line: i + 2,
                source: None,
            }
        })
        .collect()
}

fn cfg(workers: usize, train: bool) -> LoaderConfig {
    LoaderConfig {
        batch: 3,
        size: 32,
        train,
        augment: true,
        workers,
        seed: 7,
        drop_last: false,
    }
}

fn run(
    pairs: &Arc<Vec<PairRecord>>,
    order: &[usize],
    c: LoaderConfig,
    epoch: u64,
    start: usize,
) -> Vec<Batch> {
    let targets = Arc::new(
        pairs
            .iter()
            .map(|p| p.score as f32 * 0.5)
            .collect::<Vec<f32>>(),
    );
    BatchLoader::new(pairs.clone(), order.to_vec(), targets, c, epoch, start)
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn deterministic_across_workers_and_resumable() {
    let dir = temp_dir("det");
    let pairs = Arc::new(make_pairs(&dir, 10, 40, 36));
    let order = epoch_order(10, 7, 3, true);
    assert_eq!(order, epoch_order(10, 7, 3, true));
    assert_ne!(order, epoch_order(10, 7, 4, true));
    assert_eq!(epoch_order(5, 7, 3, false), vec![0, 1, 2, 3, 4]);

    let one = run(&pairs, &order, cfg(1, true), 3, 0);
    assert_eq!(one.len(), 4);
    assert_eq!(one.iter().map(|b| b.n).collect::<Vec<_>>(), [3, 3, 3, 1]);
    for w in [0, 3] {
        assert!(
            run(&pairs, &order, cfg(w, true), 3, 0) == one,
            "workers = {w} differs"
        );
    }
    // Resume from batch 2: exactly the tail of the full run.
    assert!(run(&pairs, &order, cfg(3, true), 3, 2) == one[2..]);
    assert!(run(&pairs, &order, cfg(2, true), 3, 9).is_empty());
    // Another epoch draws other crops.
    assert!(run(&pairs, &order, cfg(2, true), 4, 0) != one);
    // drop_last.
    let dl = run(
        &pairs,
        &order,
        LoaderConfig {
            drop_last: true,
            ..cfg(2, true)
        },
        3,
        0,
    );
    assert!(dl == one[..3]);
    assert_eq!(num_batches(10, 3, true), 3);
    assert_eq!(num_batches(10, 3, false), 4);

    // Packing and targets.
    for b in &one {
        assert_eq!(b.size, 32);
        assert_eq!(b.ref_u8.len(), b.n * 32 * 32 * 3);
        assert_eq!(b.dist_u8.len(), b.ref_u8.len());
        assert_eq!(b.indices.len(), b.n);
        for (j, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.targets[j], i as f32 * 0.5);
        }
    }
    let flat: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(flat, order);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn evaluation_mode_is_centre_crop_without_augmentation() {
    let dir = temp_dir("eval");
    let pairs = Arc::new(make_pairs(&dir, 4, 41, 37));
    let order: Vec<usize> = (0..4).collect();
    let batches = run(&pairs, &order, cfg(2, false), 0, 0);
    assert!(batches == run(&pairs, &order, cfg(2, false), 5, 0)); // no randomness
    let (r, d) = load_pair(&pairs[3].ref_path, &pairs[3].dist_path).unwrap();
    let (cr, cd) = center_crop_pair(&r, &d, 32).unwrap();
    let b = &batches[1]; // items 3 (index 0 of the second batch)
    assert_eq!(b.indices, [3]);
    assert_eq!(&b.ref_u8[..], cr.as_raw().as_slice());
    assert_eq!(&b.dist_u8[..], cd.as_raw().as_slice());
    // Training without augmentation: random crops of the stored pixels, same window for both.
    let plain = run(
        &pairs,
        &order,
        LoaderConfig {
            augment: false,
            ..cfg(2, true)
        },
        0,
        0,
    );
    let r0 = load_pair(&pairs[0].ref_path, &pairs[0].dist_path)
        .unwrap()
        .0;
    let first = &plain[0].ref_u8[..32 * 3];
    let found = (0..=(41 - 32)).any(|x| {
        (0..=(37 - 32)).any(|y| {
            let c = image::imageops::crop_imm(&r0, x, y, 32, 32).to_image();
            &c.as_raw()[..32 * 3] == first
        })
    });
    assert!(found);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn errors_end_the_iteration() {
    let dir = temp_dir("err");
    let mut pairs = make_pairs(&dir, 7, 40, 36);
    pairs[4].dist_path = dir.join("missing.png");
    let pairs = Arc::new(pairs);
    let order: Vec<usize> = (0..7).collect();
    for workers in [0, 1, 3] {
        let targets = Arc::new(vec![0.0f32; 7]);
        let mut it = BatchLoader::new(
            pairs.clone(),
            order.clone(),
            targets,
            cfg(workers, true),
            0,
            0,
        );
        assert!(it.next().unwrap().is_ok());
        let e = it.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("missing.png") && e.contains("not found"), "{e}");
        assert!(it.next().is_none());
    }
    // Images smaller than the crop.
    let small = Arc::new(make_pairs(&dir, 2, 20, 40));
    let targets = Arc::new(vec![0.0f32; 2]);
    let e = BatchLoader::new(
        small.clone(),
        vec![0, 1],
        targets.clone(),
        cfg(2, true),
        0,
        0,
    )
    .next()
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("r0.png") && e.contains("20x40") && e.contains("32x32"),
        "{e}"
    );
    // Bad indices / missing targets are errors, not panics.
    let e = BatchLoader::new(small.clone(), vec![5], targets.clone(), cfg(1, true), 0, 0)
        .next()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = BatchLoader::new(small, vec![1], Arc::new(vec![]), cfg(0, true), 0, 0)
        .next()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("no target"), "{e}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dropping_mid_epoch_returns_promptly() {
    let dir = temp_dir("drop");
    let pairs = Arc::new(make_pairs(&dir, 6, 300, 300));
    // 200 batches of one pair at 288x288: far more work than is done before the drop.
    let order: Vec<usize> = (0..200).map(|i| i % 6).collect();
    let targets = Arc::new(vec![0.0f32; 6]);
    let c = LoaderConfig {
        batch: 1,
        size: 288,
        train: true,
        augment: true,
        workers: 3,
        seed: 1,
        drop_last: true,
    };
    let mut it = BatchLoader::new(pairs.clone(), order, targets, c, 0, 0);
    let b = it.next().unwrap().unwrap();
    assert_eq!(b.ref_u8.len(), 288 * 288 * 3);
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    drop(it);
    let dt = t.elapsed();
    assert!(dt < Duration::from_secs(2), "drop took {dt:?}");
    let _ = fs::remove_dir_all(&dir);
}
