//! The dataset builder: determinism, file layout, labels, and clear errors on bad inputs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use asna::synth::{mos, run, SynthConfig, BANK};

fn kodak(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kodak")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Two small references cut from kodim01 and kodim23 (128x112).
fn small_refs(name: &str) -> PathBuf {
    let dir = scratch(name);
    for (f, x, y) in [("kodim01.png", 300, 200), ("kodim23.png", 330, 120)] {
        let img = image::open(kodak(f)).unwrap().to_rgb8();
        image::imageops::crop_imm(&img, x, y, 128, 112)
            .to_image()
            .save(dir.join(f))
            .unwrap();
    }
    dir
}

fn small_cfg(refs: &Path, out: &Path, seed: u64) -> SynthConfig {
    let mut c = SynthConfig::new(refs, out);
    c.seed = seed;
    c.size = 96;
    c
}

/// Every file under `dir`, relative path -> bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                m.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    m
}

#[test]
fn deterministic_for_a_seed_and_labelled_with_tid2013_mos() {
    let refs = small_refs("synth_det_refs");
    let (a, b, c) = (
        scratch("synth_det_a"),
        scratch("synth_det_b"),
        scratch("synth_det_c"),
    );
    let sa = run(&small_cfg(&refs, &a, 11), false).unwrap();
    let sb = run(&small_cfg(&refs, &b, 11), false).unwrap();
    let sc = run(&small_cfg(&refs, &c, 12), false).unwrap();
    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));

    // layout: 2 refs, 1 crop each, every implemented type x 5 levels; nothing left as .tmp
    let n = 2 * BANK.len() * 5;
    assert_eq!(sa.images.len(), n);
    assert_eq!(ta.keys().filter(|k| k.starts_with("dist/")).count(), n);
    assert!(ta.contains_key("ref/kodim01_c0.png") && ta.contains_key("ref/kodim23_c0.png"));
    assert!(
        ta.contains_key("dist/kodim01_c0_t01_l1.png")
            && ta.contains_key("dist/kodim23_c0_t23_l5.png")
    );
    assert!(!ta.keys().any(|k| k.ends_with(".tmp")));
    assert!(ta.contains_key("synth.json") && ta.contains_key("labels.csv"));

    // same seed: byte-identical (synth.json names its own out dir)
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        if k == "synth.json" {
            let ja = String::from_utf8(v.clone())
                .unwrap()
                .replace(&*a.to_string_lossy(), "OUT");
            let jb = String::from_utf8(tb[k].clone())
                .unwrap()
                .replace(&*b.to_string_lossy(), "OUT");
            assert_eq!(ja, jb);
        } else {
            assert!(
                *v == tb[k],
                "{k} differs between two runs with the same seed"
            );
        }
    }
    assert_eq!(sa, sb);

    // another seed: same labels, different images
    assert_eq!(ta["labels.csv"], tc["labels.csv"]);
    let differing = ta
        .iter()
        .filter(|(k, v)| k.ends_with(".png") && tc[*k] != **v)
        .count();
    assert!(
        differing > n / 2,
        "only {differing} images differ with another seed"
    );
    assert_ne!(
        sa.crops.iter().map(|c| (c.x, c.y)).collect::<Vec<_>>(),
        sc.crops.iter().map(|c| (c.x, c.y)).collect::<Vec<_>>()
    );

    // labels.csv: generic format, score = TID2013 MOS of the row's type and level
    let mut rd = csv::Reader::from_reader(&ta["labels.csv"][..]);
    assert_eq!(
        rd.headers().unwrap(),
        vec![
            "dis_img_path",
            "dis_type",
            "ref_img_path",
            "score",
            "ref_source"
        ]
    );
    let mut rows = 0;
    for rec in rd.records() {
        let rec = rec.unwrap();
        let (dis, ty, rf, score) = (&rec[0], &rec[1], &rec[2], rec[3].parse::<f64>().unwrap());
        // dist/<stem>_c<k>_t<TT>_l<L>.png
        let stem = dis
            .strip_prefix("dist/")
            .unwrap()
            .strip_suffix(".png")
            .unwrap();
        let (rest, l) = stem.rsplit_once("_l").unwrap();
        let (crop, t) = rest.rsplit_once("_t").unwrap();
        let (t, l): (u32, u32) = (t.parse().unwrap(), l.parse().unwrap());
        assert_eq!(score, mos(t, l).unwrap(), "{dis}");
        assert!(ty.starts_with(&format!("t{t:02}_")), "{ty}");
        assert_eq!(rf, format!("ref/{crop}.png"));
        assert_eq!(&rec[4], crop.rsplit_once("_c").unwrap().0, "{dis}");
        assert!(ta.contains_key(dis) && ta.contains_key(rf));
        rows += 1;
    }
    assert_eq!(rows, n);
    assert_eq!(mos(1, 1), Some(5.6742));
    let first = String::from_utf8(ta["labels.csv"].clone()).unwrap();
    assert_eq!(
        first.lines().nth(1).unwrap(),
        "dist/kodim01_c0_t01_l1.png,t01_additive_gaussian_noise,ref/kodim01_c0.png,5.6742,kodim01"
    );
    let json = String::from_utf8(ta["synth.json"].clone()).unwrap();
    assert!(
        json.contains("\"seed\": 11")
            && json.contains("\"psnr\": ")
            && json.contains("\"within_tolerance\": ")
    );
}

#[test]
fn type_subset_and_multiple_crops() {
    let refs = small_refs("synth_subset_refs");
    let out = scratch("synth_subset_out");
    let mut cfg = small_cfg(&refs, &out, 5);
    cfg.types = Some(vec![16, 1]);
    cfg.crops_per_ref = 2;
    let s = run(&cfg, false).unwrap();
    assert_eq!(s.crops.len(), 4);
    assert_eq!(s.images.len(), 2 * 2 * 2 * 5);
    assert_eq!(s.images[0].dis_img_path, "dist/kodim01_c0_t01_l1.png");
    assert_eq!(s.images[5].dis_type, "t16_mean_shift");
    assert!(out.join("dist/kodim23_c1_t16_l5.png").exists());
    cfg.types = Some(vec![11]);
    let e = run(&cfg, false).unwrap_err().to_string();
    assert!(e.contains("type 11"), "{e}");
}

#[test]
fn references_in_subfolders_and_webp_keep_their_source() {
    // Two sources, as tools/install-photos.sh lays them out: the same file name in both, one
    // of them a WebP photograph.
    let flat = small_refs("synth_sources_flat");
    let refs = scratch("synth_sources_refs");
    fs::create_dir_all(refs.join("plasma")).unwrap();
    fs::create_dir_all(refs.join("gcompris/animals")).unwrap();
    fs::copy(flat.join("kodim01.png"), refs.join("plasma/photo.png")).unwrap();
    let webp = refs.join("gcompris/animals/photo.webp");
    image::open(flat.join("kodim23.png"))
        .unwrap()
        .save_with_format(&webp, image::ImageFormat::WebP)
        .unwrap();
    fs::write(refs.join("plasma/COPYRIGHT"), "licence text").unwrap();
    let out = scratch("synth_sources_out");
    let mut cfg = small_cfg(&refs, &out, 2);
    cfg.types = Some(vec![1]);
    cfg.crops_per_ref = 2;
    let s = run(&cfg, false).unwrap();
    assert_eq!(s.n_refs, 2);
    assert_eq!(s.images.len(), 2 * 2 * 5);
    // Sorted by relative path; named by their folders.
    assert_eq!(
        s.images[0].ref_img_path,
        "ref/gcompris-animals-photo_c0.png"
    );
    assert_eq!(s.images[0].ref_source, "gcompris-animals-photo");
    assert_eq!(
        s.images[5].ref_img_path,
        "ref/gcompris-animals-photo_c1.png"
    );
    assert_eq!(s.images[10].ref_source, "plasma-photo");
    // The WebP reference's crop holds its pixels.
    let crop = &s.crops[0];
    let src = asna::data::load_rgb(&webp).unwrap();
    let got = image::open(out.join(&crop.ref_img_path)).unwrap().to_rgb8();
    assert_eq!(
        got,
        image::imageops::crop_imm(&src, crop.x, crop.y, 96, 96).to_image()
    );
    // Training reads the column: the four crops form two references for the split.
    let labels = out.join("labels.csv");
    let ds = asna::data::open_dataset(asna::data::DatasetFormat::Csv, &out, Some(&labels), None)
        .unwrap();
    assert_eq!(asna::data::reference_groups(&ds.pairs).len(), 2);
}

fn err_of(cfg: &SynthConfig) -> String {
    let e = run(cfg, false).expect_err("should fail").to_string();
    eprintln!("error: {e}");
    assert!(!e.contains('\n'), "error should be one line: {e}");
    e
}

#[test]
fn empty_refs_dir_is_an_error_naming_it() {
    let refs = scratch("synth_err_empty");
    fs::write(refs.join("notes.txt"), "not an image").unwrap();
    let e = err_of(&SynthConfig::new(&refs, scratch("synth_err_empty_out")));
    assert!(
        e.contains("no reference images") && e.contains(&*refs.to_string_lossy()),
        "{e}"
    );
    let missing = refs.join("nope");
    let e = err_of(&SynthConfig::new(
        &missing,
        scratch("synth_err_missing_out"),
    ));
    assert!(e.contains(&*missing.to_string_lossy()), "{e}");
}

#[test]
fn corrupt_png_among_refs_is_an_error_naming_it() {
    // garbage bytes: caught before anything is written
    let refs = small_refs("synth_err_corrupt");
    fs::write(refs.join("kodim05.png"), b"this is not a png").unwrap();
    let out = scratch("synth_err_corrupt_out");
    let e = err_of(&small_cfg(&refs, &out, 0));
    assert!(e.contains("kodim05.png"), "{e}");
    assert!(!out.join("labels.csv").exists());

    // valid header, truncated data: fails while decoding; a stale labels.csv must not survive
    let refs = small_refs("synth_err_trunc");
    let good = fs::read(refs.join("kodim23.png")).unwrap();
    fs::write(refs.join("kodim02.png"), &good[..good.len() / 2]).unwrap();
    let out = scratch("synth_err_trunc_out");
    fs::write(out.join("labels.csv"), "stale").unwrap();
    let e = err_of(&small_cfg(&refs, &out, 0));
    assert!(e.contains("kodim02.png"), "{e}");
    assert!(
        !out.join("labels.csv").exists(),
        "an interrupted run must not leave a labels.csv"
    );
}

#[test]
fn reference_smaller_than_crop_is_an_error_naming_it() {
    let refs = scratch("synth_err_small");
    fs::copy(kodak("kodim01.png"), refs.join("kodim01.png")).unwrap();
    image::RgbImage::new(300, 200)
        .save(refs.join("tiny.png"))
        .unwrap();
    let e = err_of(&SynthConfig::new(&refs, scratch("synth_err_small_out")));
    assert!(
        e.contains("tiny.png") && e.contains("300x200") && e.contains("288"),
        "{e}"
    );
}

#[test]
fn unwritable_out_dir_is_an_error_naming_it() {
    let refs = small_refs("synth_err_out_refs");
    let base = scratch("synth_err_out");
    let file = base.join("a_file");
    fs::write(&file, "x").unwrap();
    let out = file.join("out");
    let e = err_of(&small_cfg(&refs, &out, 0));
    assert!(
        e.contains(&*out.to_string_lossy()) || e.contains(&*file.to_string_lossy()),
        "{e}"
    );
}
