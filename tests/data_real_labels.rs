//! The project's real label files (tests/data/labels), laid out in each dataset's native form
//! with 1-byte stand-in images (hard links to one file), read back by the dataset readers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use asna::data::{
    open_dataset, reference_groups, split_by_reference, Dataset, DatasetFormat, Direction,
};

struct Row {
    dist: String,
    dis_type: String,
    refp: String,
    score: String,
}

fn labels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/labels")
}

fn read_rows(name: &str) -> Vec<Row> {
    let text = fs::read_to_string(labels_dir().join(name)).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().trim(),
        "dis_img_path,dis_type,ref_img_path,score"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                dist: f[0].into(),
                dis_type: f[1].into(),
                refp: f[2].into(),
                score: f[3].into(),
            }
        })
        .collect()
}

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap()
}

/// Creates every image named in `rows` under `base` as a hard link to `seed`.
fn lay_out_images(base: &Path, seed: &Path, rows: &[Row]) {
    let mut dirs = HashSet::new();
    let mut done = HashSet::new();
    for r in rows {
        for rel in [&r.dist, &r.refp] {
            if !done.insert(rel.clone()) {
                continue;
            }
            let p = base.join(rel);
            let parent = p.parent().unwrap().to_path_buf();
            if dirs.insert(parent.clone()) {
                fs::create_dir_all(&parent).unwrap();
            }
            if fs::hard_link(seed, &p).is_err() {
                fs::write(&p, b"x").unwrap();
            }
        }
    }
}

/// Checks pair count, reference count, and that each pair's reference, score and type agree with the CSV row.
/// Native layouts put every file where the CSV says (`base/PIPAL/Distortion_1/...`), so pairs are
/// matched to rows by full path.
fn check_against_csv(
    base: &Path,
    ds: &Dataset,
    rows: &[Row],
    n_pairs: usize,
    n_refs: usize,
    check_type: bool,
) {
    assert_eq!(ds.pairs.len(), n_pairs);
    assert_eq!(ds.num_references(), n_refs);
    let by_dist: HashMap<PathBuf, &Row> = rows.iter().map(|r| (base.join(&r.dist), r)).collect();
    assert_eq!(by_dist.len(), rows.len());
    for p in &ds.pairs {
        let dist = p.dist_path.display();
        let row = by_dist[&p.dist_path];
        assert_eq!(p.ref_path, base.join(&row.refp), "{dist}");
        assert_eq!(p.score, row.score.parse::<f64>().unwrap(), "{dist}");
        if check_type {
            assert_eq!(p.dis_type, row.dis_type, "{dist}");
        }
    }
    // Grouping by reference is the CSV's ref column.
    let mut csv_groups: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        *csv_groups
            .entry(base_name(&r.refp).to_lowercase())
            .or_default() += 1;
    }
    let groups: BTreeMap<String, usize> = reference_groups(&ds.pairs)
        .into_iter()
        .map(|(k, v)| {
            (
                k.file_name().unwrap().to_str().unwrap().to_lowercase(),
                v.len(),
            )
        })
        .collect();
    assert_eq!(groups, csv_groups);
}

#[test]
fn real_label_files_in_native_and_csv_layouts() {
    let t0 = Instant::now();
    let base = std::env::temp_dir().join(format!("asna-test-real-labels-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    let seed = base.join("seed.bin");
    fs::write(&seed, b"x").unwrap();

    let names = [
        "PIPAL.txt",
        "KADID-10k.txt",
        "TID2013.txt",
        "TID2008.txt",
        "CSIQ.txt",
        "LIVE.txt",
    ];
    let all: HashMap<&str, Vec<Row>> = names.iter().map(|n| (*n, read_rows(n))).collect();
    for n in names {
        lay_out_images(&base, &seed, &all[n]);
    }
    let t_layout = t0.elapsed();

    // Generic CSV form: the files as they are, paths relative to `base`.
    for (name, pairs, refs, dir) in [
        ("PIPAL.txt", 23200, 200, None),
        ("KADID-10k.txt", 10125, 81, None),
        ("TID2013.txt", 3000, 25, None),
        ("TID2008.txt", 1700, 25, None),
        ("CSIQ.txt", 866, 30, Some(Direction::LowerIsBetter)),
        ("LIVE.txt", 779, 29, Some(Direction::LowerIsBetter)),
    ] {
        let ds = open_dataset(
            DatasetFormat::Csv,
            &base,
            Some(&labels_dir().join(name)),
            dir,
        )
        .unwrap();
        check_against_csv(&base, &ds, &all[name], pairs, refs, true);
        assert_eq!(ds.direction, dir.unwrap_or(Direction::HigherIsBetter));
    }

    // PIPAL native: Train_Label/Axxxx.txt, one file per reference.
    let pipal = base.join("PIPAL");
    fs::create_dir_all(pipal.join("Train_Label")).unwrap();
    let mut per_ref: BTreeMap<String, String> = BTreeMap::new();
    for r in &all["PIPAL.txt"] {
        let stem = base_name(&r.refp).trim_end_matches(".bmp").to_string();
        per_ref
            .entry(stem)
            .or_default()
            .push_str(&format!("{},{}\n", base_name(&r.dist), r.score));
    }
    for (stem, text) in &per_ref {
        fs::write(pipal.join("Train_Label").join(format!("{stem}.txt")), text).unwrap();
    }
    let ds = open_dataset(DatasetFormat::Pipal, &pipal, None, None).unwrap();
    check_against_csv(&base, &ds, &all["PIPAL.txt"], 23200, 200, true);
    assert!(ds
        .pairs
        .iter()
        .any(|p| p.dist_path.starts_with(pipal.join("Distortion_4"))));
    let (train, val) = split_by_reference(&ds.pairs, 0.2, 42);
    assert_eq!(train.len() + val.len(), 23200);
    let tr: HashSet<_> = train.iter().map(|&i| &ds.pairs[i].ref_path).collect();
    let va: HashSet<_> = val.iter().map(|&i| &ds.pairs[i].ref_path).collect();
    assert!(tr.is_disjoint(&va));
    assert_eq!(va.len(), 40);

    // KADID-10k native: dmos.csv + images/.
    let kadid = base.join("KADID-10k");
    let mut text = String::from("dist_img,ref_img,dmos,var\n");
    for r in &all["KADID-10k.txt"] {
        text.push_str(&format!(
            "{},{},{},0.5\n",
            base_name(&r.dist),
            base_name(&r.refp),
            r.score
        ));
    }
    fs::write(kadid.join("dmos.csv"), text).unwrap();
    let ds = open_dataset(DatasetFormat::Kadid, &kadid, None, None).unwrap();
    check_against_csv(&base, &ds, &all["KADID-10k.txt"], 10125, 81, true);

    // TID2013 / TID2008 native: mos_with_names.txt + reference_images/ + distorted_images/.
    for (name, format, n) in [
        ("TID2013.txt", DatasetFormat::Tid2013, 3000),
        ("TID2008.txt", DatasetFormat::Tid2008, 1700),
    ] {
        let root = base.join(name.trim_end_matches(".txt"));
        let text: String = all[name]
            .iter()
            .map(|r| format!("{} {}\r\n", r.score, base_name(&r.dist)))
            .collect();
        fs::write(root.join("mos_with_names.txt"), text).unwrap();
        let ds = open_dataset(format, &root, None, None).unwrap();
        // TID2013's CSV names type 24 "Multiply_Dist." as the reader does; all types agree.
        check_against_csv(&base, &ds, &all[name], n, 25, true);
    }

    let _ = fs::remove_dir_all(&base);
    eprintln!(
        "real label files: layout {:?}, total {:?}",
        t_layout,
        t0.elapsed()
    );
}
