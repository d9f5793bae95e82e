//! The `asna` binary against bad input: every failure is one line on stderr that starts with
//! "error:" and names the file, exit code 1 (2 for usage errors), never a panic, never a hang,
//! never a half-written output file. Odd but valid images must score.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use asna::data::{Direction, LabelScaler};
use asna::model::checkpoint::{model_metadata, save};
use asna::model::params::ParamStore;
use asna::model::weights::serialize;
use image::{DynamicImage, ImageFormat, RgbImage};

const TIMEOUT: Duration = Duration::from_secs(120);
/// Start of the name of the directory holding every test file.
const DIR_PREFIX: &str = "asna-cli-errors-";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a kill-after-TIMEOUT guard.
fn asna(args: &[&dyn AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asna"));
    for a in args {
        cmd.arg(a);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start asna");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for asna") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "asna {:?} hung: killed after {TIMEOUT:?}",
                display_args(args)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn display_args(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

/// Asserts a runtime failure: exit 1, one stderr line "error: ..." naming every `names`,
/// containing every `contains`, no panic. Returns the line.
#[track_caller]
fn fails(r: &Run, names: &[&Path], contains: &[&str]) -> String {
    let e = r.stderr.trim_end();
    assert!(!e.contains("panicked"), "panic:\n{e}");
    assert_eq!(r.code, 1, "exit code {} (want 1); stderr:\n{e}", r.code);
    assert!(!e.contains('\n'), "stderr is not one line:\n{e}");
    assert!(
        e.starts_with("error: "),
        "stderr does not start with \"error:\": {e}"
    );
    for n in names {
        let n = n.display().to_string();
        assert!(e.contains(&n), "error does not name {n}: {e}");
    }
    // The words asked for must be in the message itself, not in a file name.
    let words: Vec<&str> = e
        .split_whitespace()
        .filter(|t| !t.contains(DIR_PREFIX))
        .collect();
    let words = words.join(" ");
    for c in contains {
        if c.starts_with(':') {
            // A line number, right after the first file named: FILE:LINE:
            let at = format!("{}{c}", names[0].display());
            assert!(e.contains(&at), "error lacks \"{at}\": {e}");
        } else {
            assert!(words.contains(c), "error lacks \"{c}\": {e}");
        }
    }
    e.to_string()
}

/// Asserts success with one number on stdout; returns it.
#[track_caller]
fn scores(r: &Run) -> f64 {
    assert!(!r.stderr.contains("panicked"), "panic:\n{}", r.stderr);
    assert_eq!(r.code, 0, "exit code {}; stderr:\n{}", r.code, r.stderr);
    let v: f64 = r
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("stdout is not a number: {:?}", r.stdout));
    assert!(v.is_finite(), "score {v}");
    v
}

// ---- fixtures -------------------------------------------------------------------------

struct Fixture {
    dir: PathBuf,
    /// A valid model file (random weights, our metadata).
    model: PathBuf,
    /// The tensors and metadata of `model`, to craft broken variants.
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    meta: BTreeMap<String, String>,
    /// A valid 288x288 RGB PNG.
    refimg: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let gpu = asna::gpu::Gpu::default_adapter().expect("a GPU adapter (lavapipe)");
        let store = ParamStore::init(&gpu, &asna::model::asna::specs(), 0);
        let meta = model_metadata(&LabelScaler {
            mean: 0.0,
            std: 1.0,
            direction: Direction::HigherIsBetter,
        });
        let model = dir.join("model.safetensors");
        save(&gpu, &model, &store, None, &meta).unwrap();
        let tensors = store.to_file_tensors(&gpu).unwrap();
        let refimg = dir.join("ref.png");
        noise(288, 288, 1).save(&refimg).unwrap();
        Fixture {
            dir,
            model,
            tensors,
            meta,
            refimg,
        }
    })
}

/// A fresh directory under the fixture's.
fn case_dir(name: &str) -> PathBuf {
    let d = fixture().dir.join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = asna::rng::Rng::new(seed);
    RgbImage::from_fn(w, h, |x, y| {
        let base = ((x + y) % 256) as u8;
        let n = rng.below(32) as u8;
        image::Rgb([base.wrapping_add(n), base / 2 + n, 255 - base])
    })
}

fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut v = std::io::Cursor::new(Vec::new());
    img.write_to(&mut v, fmt).unwrap();
    v.into_inner()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// An 8-bit palette PNG (16 colours, stored zlib blocks).
fn palette_png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.push(((x / 18 + y / 18) % 16) as u8);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push((i + 1 == blocks.len()) as u8);
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &v in &raw {
        a = (a + v as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let plte: Vec<u8> = (0..16u8)
        .flat_map(|i| [i * 16, 255 - i * 16, i * 8])
        .collect();
    png_chunk(&mut out, b"PLTE", &plte);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn model_arg() -> &'static Path {
    &fixture().model
}

/// `asna score REF DIST --weights MODEL`.
fn score_pair(r: &Path, d: &Path) -> Run {
    asna(&[&"score", &r, &d, &"--weights", &model_arg()], &[])
}

// ---- images ---------------------------------------------------------------------------

#[test]
fn bad_images_are_refused() {
    let f = fixture();
    let d = case_dir("images");
    let good = f.refimg.as_path();
    let png = encode(
        &DynamicImage::ImageRgb8(noise(288, 288, 2)),
        ImageFormat::Png,
    );
    let jpg = encode(
        &DynamicImage::ImageRgb8(noise(288, 288, 3)),
        ImageFormat::Jpeg,
    );
    let bmp = encode(
        &DynamicImage::ImageRgb8(noise(288, 288, 4)),
        ImageFormat::Bmp,
    );
    let mut bad_bmp = bmp.clone();
    bad_bmp[28] = 13; // bits per pixel
    let cases: Vec<(PathBuf, &str)> = vec![
        (d.join("missing.png"), "not found"),
        (d.join("a_directory.png"), "directory"),
        (write(&d.join("empty.png"), b""), "empty"),
        (write(&d.join("trunc.png"), &png[..png.len() / 2]), "PNG"),
        (write(&d.join("trunc.jpg"), &jpg[..jpg.len() / 2]), "JPEG"),
        (write(&d.join("corrupt.bmp"), &bad_bmp), "BMP"),
        (
            write(&d.join("text.png"), b"hello, I am not a picture\n"),
            "not an image",
        ),
        (
            write(&d.join("anim.gif"), b"GIF89a\x20\x01\x20\x01\x00\x00\x00;"),
            "unsupported",
        ),
        (
            write(
                &d.join("icon.ico"),
                b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00",
            ),
            "unsupported",
        ),
        (
            write(&d.join("scan.tif"), b"II*\x00\x08\x00\x00\x00\x00\x00"),
            "truncated or corrupt TIFF",
        ),
    ];
    fs::create_dir_all(d.join("a_directory.png")).unwrap();
    for (path, what) in &cases {
        let e = fails(&score_pair(good, path), &[path], &[what]);
        eprintln!("dist {}: {e}", path.display());
    }
    // The reference is checked as well.
    fails(&score_pair(&cases[3].0, good), &[&cases[3].0], &["PNG"]);
}

#[test]
fn size_mismatch_and_small_images_are_refused() {
    let f = fixture();
    let d = case_dir("sizes");
    let wide = d.join("wide.png");
    noise(296, 288, 5).save(&wide).unwrap();
    fails(
        &score_pair(&f.refimg, &wide),
        &[&f.refimg, &wide],
        &["size"],
    );

    let (sr, sd) = (d.join("small_ref.png"), d.join("small_dist.png"));
    noise(200, 290, 6).save(&sr).unwrap();
    noise(200, 290, 7).save(&sd).unwrap();
    fails(&score_pair(&sr, &sd), &[&sr], &["288"]);
    // The same in a list, and with --out: no file left.
    let list = write(
        &d.join("small.csv"),
        b"ref,dist\nsmall_ref.png,small_dist.png\n",
    );
    let out = d.join("out.csv");
    let r = asna(
        &[
            &"score",
            &"--pairs",
            &list,
            &"--weights",
            &model_arg(),
            &"--out",
            &out,
        ],
        &[],
    );
    fails(&r, &[&sr], &["288"]);
    assert!(!out.exists());
}

#[test]
fn odd_but_valid_images_score() {
    let d = case_dir("valid");
    let base = noise(288, 288, 8);
    let dist = noise(288, 288, 9);
    let pairs: Vec<(&str, DynamicImage, DynamicImage)> = vec![
        (
            "gray",
            DynamicImage::ImageRgb8(base.clone()).into_luma8().into(),
            DynamicImage::ImageRgb8(dist.clone()).into_luma8().into(),
        ),
        (
            "gray_alpha",
            DynamicImage::ImageRgb8(base.clone())
                .into_luma_alpha8()
                .into(),
            DynamicImage::ImageRgb8(dist.clone())
                .into_luma_alpha8()
                .into(),
        ),
        (
            "rgba",
            DynamicImage::ImageRgb8(base.clone()).into_rgba8().into(),
            DynamicImage::ImageRgb8(dist.clone()).into_rgba8().into(),
        ),
        (
            "rgb16",
            DynamicImage::ImageRgb8(base.clone()).into_rgb16().into(),
            DynamicImage::ImageRgb8(dist.clone()).into_rgb16().into(),
        ),
    ];
    for (name, r, di) in pairs {
        let (rp, dp) = (
            d.join(format!("{name}_r.png")),
            d.join(format!("{name}_d.png")),
        );
        fs::write(&rp, encode(&r, ImageFormat::Png)).unwrap();
        fs::write(&dp, encode(&di, ImageFormat::Png)).unwrap();
        let s = scores(&score_pair(&rp, &dp));
        eprintln!("{name}: {s}");
    }
    let pal = write(&d.join("palette.png"), &palette_png(288, 288));
    scores(&score_pair(&pal, &pal));
    // The same pair as PNG, lossless WebP, and 8 and 16-bit TIFF: the same score.
    let (r, di) = (
        DynamicImage::ImageRgb8(base.clone()),
        DynamicImage::ImageRgb8(dist.clone()),
    );
    let mut same = Vec::new();
    for (ext, fmt, r, di) in [
        ("png", ImageFormat::Png, r.clone(), di.clone()),
        ("webp", ImageFormat::WebP, r.clone(), di.clone()),
        ("tif", ImageFormat::Tiff, r.clone(), di.clone()),
        (
            "tiff",
            ImageFormat::Tiff,
            r.into_rgb16().into(),
            di.into_rgb16().into(),
        ),
    ] {
        let (rp, dp) = (
            d.join(format!("fmt_r.{ext}")),
            d.join(format!("fmt_d.{ext}")),
        );
        fs::write(&rp, encode(&r, fmt)).unwrap();
        fs::write(&dp, encode(&di, fmt)).unwrap();
        same.push((ext, scores(&score_pair(&rp, &dp))));
    }
    assert!(same.iter().all(|(_, s)| *s == same[0].1), "{same:?}");
    // Not a multiple of 288: four overlapping windows.
    let (wr, wd) = (d.join("win_r.png"), d.join("win_d.png"));
    noise(300, 290, 10).save(&wr).unwrap();
    noise(300, 290, 11).save(&wd).unwrap();
    scores(&score_pair(&wr, &wd));
}

// ---- pair lists -----------------------------------------------------------------------

#[test]
fn pair_lists() {
    let f = fixture();
    let d = case_dir("lists");
    let img = |n: &str, seed| {
        let p = d.join(n);
        noise(288, 288, seed).save(&p).unwrap();
        p
    };
    let (a, b) = (img("a.png", 20), img("b b.png", 21));
    let score_list = |list: &Path| {
        asna(
            &[
                &"score",
                &"--pairs",
                &list,
                &"--weights",
                &model_arg(),
                &"--quiet",
            ],
            &[],
        )
    };
    // Refused.
    let l = write(&d.join("cols.csv"), b"reference,distorted\na.png,a.png\n");
    fails(&score_list(&l), &[&l], &["\"ref\"", "\"dist\""]);
    let l = write(&d.join("latin1.csv"), b"ref,dist\na.png,caf\xe9.png\n");
    fails(&score_list(&l), &[&l], &["UTF-8"]);
    let l = write(&d.join("zero.csv"), b"");
    fails(&score_list(&l), &[&l], &["empty list"]);
    let l = write(&d.join("header_only.csv"), b"ref,dist\n");
    fails(&score_list(&l), &[&l], &["no pairs"]);
    let l = write(&d.join("blank_field.csv"), b"ref,dist\na.png,\n");
    fails(&score_list(&l), &[&l], &[":2:"]);
    let l = write(&d.join("missing_img.csv"), b"ref,dist\na.png,nope.png\n");
    fails(&score_list(&l), &[&d.join("nope.png")], &["not found"]);
    let l = d.join("no_such_list.csv");
    fails(&score_list(&l), &[&l], &[]);
    // Paths stay inside the list's folder, whether or not the file outside exists (the
    // message does not say); each pair once; a column named twice is ambiguous.
    let l = write(
        &d.join("abs.csv"),
        b"ref,dist
a.png,a.png
/etc/passwd,a.png
",
    );
    fails(&score_list(&l), &[&l], &[":3:", "absolute"]);
    let l = write(
        &d.join("up.csv"),
        b"ref,dist
a.png,../lists/a.png
",
    );
    let e = fails(&score_list(&l), &[&l], &[":2:", "\"..\""]);
    assert!(!e.contains("not found"), "{e}");
    let l = write(
        &d.join("sub_up.csv"),
        b"ref,dist
x/../../a.png,a.png
",
    );
    fails(&score_list(&l), &[&l], &[":2:", "\"..\""]);
    let l = write(
        &d.join("twice.csv"),
        b"ref,dist\na.png,a.png\na.png,\"b b.png\"\n./a.png,a.png\n",
    );
    fails(&score_list(&l), &[&l], &[":4:", "listed twice", "line 2"]);
    let l = write(
        &d.join("ambiguous.csv"),
        b"ref,ref,dist\na.png,b b.png,a.png\n",
    );
    fails(&score_list(&l), &[&l], &[":1:", "\"ref\" twice"]);
    let l = write(
        &d.join("controls.csv"),
        b"ref,dist\n/a\x1b[2J\x07.png,a.png\n",
    );
    let e = fails(&score_list(&l), &[&l], &[":2:", "absolute"]);
    assert!(!e.contains('\x1b') && !e.contains('\x07'), "{e:?}");

    // Accepted: BOM, CRLF, quoted fields (a comma-free name with a space), extra columns.
    let l = write(
        &d.join("odd.csv"),
        b"\xef\xbb\xbfid,ref,dist\r\n1,a.png,\"b b.png\"\r\n2,\"a.png\",a.png\r\n",
    );
    let out = d.join("odd_scores.csv");
    let r = asna(
        &[
            &"score",
            &"--pairs",
            &l,
            &"--weights",
            &model_arg(),
            &"--out",
            &out,
        ],
        &[],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
    let text = fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "ref,dist,score");
    for l in &lines[1..] {
        let v: f64 = l.rsplit(',').next().unwrap().parse().unwrap();
        assert!(v.is_finite());
    }
    let _ = (a, b, f);
}

#[test]
fn a_failed_list_leaves_only_whole_rows_and_says_how_to_finish() {
    let d = case_dir("partial");
    noise(288, 288, 30).save(d.join("a.png")).unwrap();
    let png = encode(
        &DynamicImage::ImageRgb8(noise(288, 288, 31)),
        ImageFormat::Png,
    );
    write(&d.join("bad.png"), &png[..png.len() / 3]);
    let list = write(
        &d.join("list.csv"),
        b"ref,dist\na.png,a.png\na.png,bad.png\n",
    );
    // The bad pair is in the first chunk: nothing is scored, and no file is written.
    for fmt in ["csv", "json", "jsonl"] {
        let out = d.join(format!("scores.{fmt}"));
        let r = asna(
            &[
                &"score",
                &"--pairs",
                &list,
                &"--weights",
                &model_arg(),
                &"--format",
                &fmt,
                &"--out",
                &out,
            ],
            &[],
        );
        let e = fails(&r, &[&d.join("bad.png")], &["PNG"]);
        assert!(!e.contains("--resume"), "{e}");
        assert!(
            !out.exists(),
            "{} written by a run that scored nothing",
            out.display()
        );
        assert!(!d.join(format!("scores.{fmt}.resume.json")).exists());
    }
    // With one pair per batch the first chunk (4 pairs) is scored and its rows written before
    // the fifth pair fails.
    noise(288, 288, 32).save(d.join("c.png")).unwrap();
    let list = write(
        &d.join("long.csv"),
        b"ref,dist\na.png,a.png\na.png,c.png\nc.png,a.png\nc.png,c.png\na.png,bad.png\n",
    );
    let out = d.join("long_scores.csv");
    let r = asna(
        &[
            &"score",
            &"--pairs",
            &list,
            &"--weights",
            &model_arg(),
            &"--batch",
            &"1",
            &"--out",
            &out,
        ],
        &[],
    );
    fails(
        &r,
        &[&d.join("bad.png"), &out],
        &["PNG", "holds the pairs scored before it", "--resume"],
    );
    let record = fs::read_to_string(d.join("long_scores.csv.resume.json")).unwrap();
    assert!(record.contains("\"complete\": false"), "{record}");
    let text = fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(text.ends_with('\n'));
    for l in &lines[1..] {
        assert!(l.rsplit(',').next().unwrap().parse::<f64>().is_ok(), "{l}");
    }
    let left: Vec<_> = fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

// ---- training label files --------------------------------------------------------------

#[test]
fn training_label_files() {
    let d = case_dir("train");
    for n in ["r1.png", "d1.png", "d2.png"] {
        write(&d.join(n), b"");
    }
    let cases: Vec<(&str, &str, &[&str])> = vec![
        (
            "nocols",
            "dis_img_path,ref_img_path\nd1.png,r1.png\n",
            &[":1:", "score"],
        ),
        (
            "text",
            "dis_img_path,ref_img_path,score\nd1.png,r1.png,good\n",
            &[":2:", "not a number"],
        ),
        (
            "nan",
            "dis_img_path,ref_img_path,score\nd1.png,r1.png,3\nd2.png,r1.png,NaN\n",
            &[":3:", "finite"],
        ),
        (
            "dup",
            "dis_img_path,ref_img_path,score\nd1.png,r1.png,3\nd2.png,r1.png,2\nd1.png,r1.png,4\n",
            &[":4:", "duplicate"],
        ),
        (
            "escape",
            "dis_img_path,ref_img_path,score\n../../etc/passwd,r1.png,3\n",
            &[":2:", ".."],
        ),
        (
            "short",
            "dis_img_path,ref_img_path,score\nd1.png,r1.png\n",
            &[":2:", "score"],
        ),
        (
            "ambiguous",
            "dis_img_path,ref_img_path,score,SCORE\nd1.png,r1.png,3,4\n",
            &[":1:", "\"score\" twice"],
        ),
    ];
    for (name, text, want) in cases {
        let labels = write(&d.join(format!("{name}.csv")), text.as_bytes());
        let out = d.join(format!("run_{name}"));
        let r = asna(
            &[
                &"train",
                &"--dataset",
                &"csv",
                &"--root",
                &d,
                &"--labels",
                &labels,
                &"--out",
                &out,
                &"--max-steps",
                &"1",
                &"--quiet",
            ],
            &[],
        );
        fails(&r, &[&labels], want);
        assert!(
            !out.exists(),
            "{}: run directory created by a failed run",
            out.display()
        );
    }
    // Default label file ROOT/labels.csv, absent.
    let out = d.join("run_default");
    let r = asna(
        &[
            &"train",
            &"--root",
            &d,
            &"--out",
            &out,
            &"--max-steps",
            &"1",
        ],
        &[],
    );
    fails(&r, &[&d.join("labels.csv")], &["not found"]);
}

/// Text inputs are regular files of bounded size: a FIFO nobody writes, or a device that never
/// ends, is refused at once instead of blocking or filling memory.
#[test]
fn text_inputs_that_are_not_regular_files_are_refused() {
    let d = case_dir("not_files");
    let fifo = d.join("fifo.csv");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    let zero = Path::new("/dev/zero");
    for (list, kind) in [(fifo.as_path(), "a FIFO"), (zero, "a character device")] {
        let t = Instant::now();
        let r = asna(&[&"score", &"--pairs", &list, &"--quiet"], &[]);
        fails(&r, &[list], &[kind]);
        let r = asna(
            &[
                &"eval",
                &"--dataset",
                &"csv",
                &"--root",
                &d,
                &"--labels",
                &list,
                &"--quiet",
            ],
            &[],
        );
        fails(&r, &[list], &[kind]);
        assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    }
    // A run directory whose metrics log is a FIFO, or whose baselines file is /dev/zero.
    let run = case_dir("not_files_run");
    Command::new("mkfifo")
        .arg(run.join("metrics.jsonl"))
        .status()
        .unwrap();
    let r = asna(&[&"plot-run", &run], &[]);
    fails(&r, &[&run.join("metrics.jsonl")], &["a FIFO"]);
    fs::remove_file(run.join("metrics.jsonl")).unwrap();
    write(
        &run.join("metrics.jsonl"),
        b"{\"step\":1,\"plcc\":0.5,\"srcc\":0.5}\n",
    );
    std::os::unix::fs::symlink(zero, run.join("baselines.json")).unwrap();
    let r = asna(&[&"plot-run", &run], &[]);
    fails(&r, &[&run.join("baselines.json")], &["a character device"]);
}

// ---- model files ----------------------------------------------------------------------

#[test]
fn bad_model_files_are_refused() {
    let f = fixture();
    let d = case_dir("weights");
    let good = fs::read(&f.model).unwrap();
    let img = f.refimg.as_path();
    let ser = |tensors: &[(String, Vec<usize>, Vec<f32>)], meta: &BTreeMap<String, String>| {
        serialize(tensors, meta).unwrap()
    };
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();
    cases.push((
        write(&d.join("trunc.safetensors"), &good[..good.len() / 2]),
        "safetensors",
    ));
    let mut rng = asna::rng::Rng::new(1);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.below(256) as u8).collect();
    cases.push((
        write(&d.join("garbage.safetensors"), &garbage),
        "safetensors",
    ));
    cases.push((write(&d.join("empty.safetensors"), b""), "empty"));
    cases.push((d.join("missing.safetensors"), "cannot read"));

    // Another model: the sorter's architecture.
    let gpu = asna::gpu::Gpu::default_adapter().unwrap();
    let sorter = ParamStore::init(&gpu, &asna::model::sorter::specs(), 0);
    let mut smeta = BTreeMap::new();
    smeta.insert(
        "architecture".to_string(),
        asna::model::sorter::ARCHITECTURE.to_string(),
    );
    smeta.insert(
        "spec_version".to_string(),
        asna::model::asna::SPEC_VERSION.to_string(),
    );
    let p = d.join("sorter.safetensors");
    save(&gpu, &p, &sorter, None, &smeta).unwrap();
    cases.push((p, "architecture"));
    // Our tensors without our metadata.
    cases.push((
        write(
            &d.join("nometa.safetensors"),
            &ser(&f.tensors, &BTreeMap::new()),
        ),
        "metadata",
    ));
    // A tensor missing.
    let missing_name = f.tensors[3].0.clone();
    let fewer: Vec<_> = f
        .tensors
        .iter()
        .filter(|t| t.0 != missing_name)
        .cloned()
        .collect();
    cases.push((
        write(&d.join("lacks.safetensors"), &ser(&fewer, &f.meta)),
        "missing tensor",
    ));
    // A wrong shape (same size, transposed).
    let mut reshaped = f.tensors.clone();
    let i = reshaped
        .iter()
        .position(|t| t.1.len() == 4 && t.1[0] != t.1[1])
        .unwrap();
    reshaped[i].1.swap(0, 1);
    cases.push((
        write(&d.join("shape.safetensors"), &ser(&reshaped, &f.meta)),
        "shape",
    ));
    // An unknown spec version.
    let mut m = f.meta.clone();
    m.insert("spec_version".into(), "asna-model/99".into());
    cases.push((
        write(&d.join("version.safetensors"), &ser(&f.tensors, &m)),
        "spec version",
    ));
    // NaN values.
    let mut nan = f.tensors.clone();
    nan[0].2[0] = f32::NAN;
    cases.push((
        write(&d.join("nan.safetensors"), &ser(&nan, &f.meta)),
        "NaN",
    ));
    // Bad label metadata.
    let mut m = f.meta.clone();
    m.insert("label_std".into(), "-1".into());
    cases.push((
        write(&d.join("std.safetensors"), &ser(&f.tensors, &m)),
        "label_std",
    ));
    // A label scale whose scores would not be ordinary numbers (1e308 printed "inf").
    for (key, value, name) in [
        ("label_mean", "1e308", "mean.safetensors"),
        ("label_std", "1e13", "wide.safetensors"),
    ] {
        let mut m = f.meta.clone();
        m.insert(key.into(), value.into());
        cases.push((write(&d.join(name), &ser(&f.tensors, &m)), "implausible"));
    }
    // The header is judged before any tensor is decoded: the label scale before a missing
    // tensor, and a tensor's declared type.
    let mut m = f.meta.clone();
    m.insert("label_mean".into(), "-1e300".into());
    cases.push((
        write(&d.join("mean_and_lacks.safetensors"), &ser(&fewer, &m)),
        "implausible",
    ));
    let typed = |extra: Option<(&str, safetensors::Dtype)>, replace: bool| -> Vec<u8> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = f
            .tensors
            .iter()
            .enumerate()
            .map(|(i, (n, s, v))| {
                let ints = replace && i == 0;
                let data = if ints {
                    v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect()
                } else {
                    v.iter().flat_map(|x| x.to_le_bytes()).collect()
                };
                let dtype = if ints {
                    safetensors::Dtype::I32
                } else {
                    safetensors::Dtype::F32
                };
                (n.clone(), s.clone(), data, dtype)
            })
            .chain(extra.map(|(n, dt)| (n.to_string(), vec![64], vec![0u8; 64 * 8], dt)))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, s, b, dt)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let meta: std::collections::HashMap<String, String> = f.meta.clone().into_iter().collect();
        safetensors::serialize(views, &Some(meta)).unwrap()
    };
    cases.push((
        write(&d.join("ints.safetensors"), &typed(None, true)),
        "expected a float type",
    ));
    // A directory without best.safetensors.
    cases.push((case_dir("weights_rundir"), "best.safetensors"));
    // Larger than any model (sparse: the size is declared, nothing is written).
    let large = d.join("large.safetensors");
    fs::File::create(&large)
        .unwrap()
        .set_len(asna::model::weights::MAX_WEIGHTS_FILE_BYTES + 1)
        .unwrap();
    cases.push((large, "bytes, more than the 1073741824"));
    // A device that never ends: refused on its type, before a byte is read.
    #[cfg(unix)]
    cases.push((PathBuf::from("/dev/zero"), "is a character device"));

    for (path, what) in &cases {
        let r = asna(&[&"score", &img, &img, &"--weights", &path], &[]);
        let e = fails(&r, &[path], &[what]);
        eprintln!("{}: {e}", path.display());
    }
    // `web` refuses the models `score` refuses, before it writes the site.
    let site = d.join("site");
    let implausible = d.join("mean.safetensors");
    let r = asna(&[&"web", &"--weights", &implausible, &"--out", &site], &[]);
    fails(&r, &[&implausible], &["implausible"]);
    assert!(!site.exists(), "a site written from a refused model");
    // Tensors the model does not use are not decoded: one of a type asna cannot read is
    // skipped, and the model scores.
    let extra = write(
        &d.join("extra.safetensors"),
        &typed(Some(("notes.unused", safetensors::Dtype::I64)), false),
    );
    scores(&asna(&[&"score", &img, &img, &"--weights", &extra], &[]));
}

// ---- usage errors and adapters --------------------------------------------------------

#[test]
fn usage_errors_exit_2() {
    let f = fixture();
    for args in [
        vec!["score", "--no-such-flag"],
        vec!["score", f.refimg.to_str().unwrap()],
        vec!["score"],
        vec!["no-such-command"],
        vec!["train", "--out"],
        vec!["score", "--shard", "3/2", "a", "b"],
    ] {
        let a: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let r = asna(&a, &[]);
        assert_eq!(
            r.code, 2,
            "{args:?}: exit {}; stderr:\n{}",
            r.code, r.stderr
        );
        assert!(r.stderr.starts_with("error:"), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn outputs_never_overwrite_inputs() {
    let f = fixture();
    let d = case_dir("overwrite");
    noise(288, 288, 40).save(d.join("a.png")).unwrap();
    noise(288, 288, 41).save(d.join("b.png")).unwrap();
    let list = write(&d.join("list.csv"), b"ref,dist\na.png,b.png\n");
    #[cfg(unix)]
    std::os::unix::fs::symlink(d.join("b.png"), d.join("link.png")).unwrap();
    let before: Vec<Vec<u8>> = ["a.png", "b.png", "list.csv"]
        .iter()
        .map(|n| fs::read(d.join(n)).unwrap())
        .collect();
    let (a, b) = (d.join("a.png"), d.join("b.png"));
    let model = f.model.clone();
    let spelled = d.join(".").join("b.png");
    let mut cases: Vec<(Vec<&dyn AsRef<std::ffi::OsStr>>, &Path, &str)> = vec![
        (
            vec![&"--pairs", &list, &"--out", &list],
            &list,
            "--out is the input",
        ),
        (
            vec![&"--pairs", &list, &"--out", &a],
            &a,
            "--out is the input",
        ),
        (vec![&a, &b, &"--map", &b], &b, "--map is the input"),
        (
            vec![&a, &b, &"--map", &spelled],
            &spelled,
            "--map is the input",
        ),
        (vec![&a, &b, &"--out", &model], &model, "--out is the input"),
        (
            vec![&a, &b, &"--out", &a, &"--map", &a],
            &a,
            "name the same file",
        ),
    ];
    #[cfg(unix)]
    let link = d.join("link.png");
    #[cfg(unix)]
    cases.push((vec![&a, &b, &"--map", &link], &link, "--map is the input"));
    for (rest, named, words) in cases {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"score", &"--weights", &f.model];
        args.extend(rest);
        let r = asna(&args, &[]);
        fails(&r, &[named], &[words]);
    }
    let after: Vec<Vec<u8>> = ["a.png", "b.png", "list.csv"]
        .iter()
        .map(|n| fs::read(d.join(n)).unwrap())
        .collect();
    assert!(before == after, "an input was changed");
    // A fresh output beside the inputs is written as before.
    let out = d.join("scores.csv");
    let r = asna(
        &[
            &"score",
            &"--weights",
            &f.model,
            &"--pairs",
            &list,
            &"--out",
            &out,
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.exists());
}

/// The other commands' outputs: eval's plot, plot-run's chart, a training run's files, a
/// site's files and a synthetic dataset are refused where they would replace an input.
#[test]
fn other_commands_never_overwrite_inputs() {
    let f = fixture();
    let d = case_dir("overwrite_others");
    noise(288, 288, 50).save(d.join("a.png")).unwrap();
    noise(288, 288, 51).save(d.join("b.png")).unwrap();
    write(
        &d.join("labels.csv"),
        b"dis_img_path,ref_img_path,score\nb.png,a.png,3\n",
    );
    write(
        &d.join("split.json"),
        b"dis_img_path,ref_img_path,score\nb.png,a.png,3\n",
    );
    fs::copy(&f.model, d.join("best.safetensors")).unwrap();
    fs::copy(&f.model, d.join("weights.bin")).unwrap();
    write(
        &d.join("metrics.jsonl"),
        b"{\"step\":1,\"plcc\":0.5,\"srcc\":0.5}\n",
    );
    let names = [
        "a.png",
        "b.png",
        "labels.csv",
        "split.json",
        "best.safetensors",
        "weights.bin",
        "metrics.jsonl",
    ];
    let snapshot =
        || -> Vec<Vec<u8>> { names.iter().map(|n| fs::read(d.join(n)).unwrap()).collect() };
    let before = snapshot();
    let eval = |plot: &Path| {
        asna(
            &[
                &"eval",
                &"--dataset",
                &"csv",
                &"--root",
                &d,
                &"--weights",
                &f.model,
                &"--plot",
                &plot,
                &"--quiet",
            ],
            &[],
        )
    };
    fails(
        &eval(&d.join("b.png")),
        &[&d.join("b.png")],
        &["--plot is the input"],
    );
    fails(
        &eval(&d.join("labels.csv")),
        &[&d.join("labels.csv")],
        &["--plot is the input"],
    );
    let plot_into = d.join("metrics.jsonl");
    let r = asna(&[&"plot-run", &d, &"--out", &plot_into], &[]);
    fails(&r, &[&plot_into], &["--out is the input"]);
    // A run whose directory holds its labels (as split.json) or its --init (as best.safetensors).
    let split = d.join("split.json");
    let r = asna(
        &[
            &"train",
            &"--dataset",
            &"csv",
            &"--root",
            &d,
            &"--labels",
            &split,
            &"--out",
            &d,
            &"--max-steps",
            &"1",
            &"--quiet",
        ],
        &[],
    );
    fails(&r, &[&split], &["--out is the input"]);
    let init = d.join("best.safetensors");
    let r = asna(
        &[
            &"train",
            &"--dataset",
            &"csv",
            &"--root",
            &d,
            &"--init",
            &init,
            &"--out",
            &d,
            &"--max-steps",
            &"1",
            &"--quiet",
        ],
        &[],
    );
    fails(&r, &[&init], &["--out is the input"]);
    assert!(!d.join("last.safetensors").exists() && !d.join("config.json").exists());
    // A site written over the model it is made from.
    let model_in_site = d.join("weights.bin");
    let r = asna(&[&"web", &"--weights", &model_in_site, &"--out", &d], &[]);
    fails(&r, &[&model_in_site], &["--out is the input"]);
    assert!(!d.join("index.html").exists());
    // A synthetic dataset in the photographs' folder, inside it, or around it.
    let photos = d.join("photos");
    fs::create_dir_all(photos.join("inner")).unwrap();
    noise(300, 300, 52)
        .save(photos.join("inner/p.png"))
        .unwrap();
    for (refs, out) in [
        (photos.clone(), photos.clone()),
        (photos.clone(), photos.join("synth")),
        (photos.join("inner"), photos.clone()),
    ] {
        let r = asna(
            &[&"synth", &"--refs", &refs, &"--out", &out, &"--quiet"],
            &[],
        );
        fails(&r, &[&out], &["one holds the other"]);
    }
    assert!(!photos.join("synth").exists() && !photos.join("labels.csv").exists());
    assert!(before == snapshot(), "an input was changed");
}

#[test]
fn train_options_out_of_range_exit_2_and_write_nothing() {
    let root = case_dir("train_ranges_root");
    let out = case_dir("train_ranges").join("run");
    for (option, value) in [
        ("--batch", "0"),
        ("--batch", "100000"),
        ("--lr", "-1"),
        ("--lr", "0"),
        ("--lr", "NaN"),
        ("--lr", "inf"),
        ("--val-fraction", "2"),
        ("--val-fraction", "1"),
        ("--epochs", "0"),
        ("--max-steps", "0"),
        ("--checkpoint-every", "0"),
        ("--mse-weight", "1.5"),
        ("--rank-weight", "-0.01"),
        ("--precise-bn", "1000000"),
        ("--workers", "0"),
        ("--batch", "four"),
    ] {
        let args: [&dyn AsRef<std::ffi::OsStr>; 6] =
            [&"train", &"--root", &root, &"--out", &out, &option];
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
        let v = value.to_string();
        a.push(&v);
        let r = asna(&a, &[]);
        assert_eq!(r.code, 2, "{option} {value}: exit {}; {}", r.code, r.stderr);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains(&format!("{option} must be a number")),
            "{option} {value}: {}",
            r.stderr
        );
        assert!(!out.exists(), "{option} {value} wrote {}", out.display());
    }
    // The ends of each range are accepted (the run then stops at the empty dataset root).
    for (option, value) in [
        ("--lr", "1"),
        ("--batch", "1"),
        ("--val-fraction", "0"),
        ("--mse-weight", "0"),
    ] {
        let args: [&dyn AsRef<std::ffi::OsStr>; 8] = [
            &"train",
            &"--root",
            &root,
            &"--out",
            &out,
            &"--rank-weight",
            &"0",
            &option,
        ];
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
        let v = value.to_string();
        a.push(&v);
        let r = asna(&a, &[]);
        assert_eq!(r.code, 1, "{option} {value}: exit {}; {}", r.code, r.stderr);
        assert!(!r.stderr.contains("must be a number"), "{}", r.stderr);
    }
}

/// Every other command's numeric options: out of range is a usage error naming the option,
/// before any work (a sorter trained for 0 steps used to be written).
#[test]
fn numeric_options_of_every_command_are_range_checked() {
    let f = fixture();
    let d = case_dir("ranges_others");
    let sorter = d.join("sorter.safetensors");
    let img = f.refimg.as_path();
    let cases: Vec<(Vec<&dyn AsRef<std::ffi::OsStr>>, &str)> = vec![
        (vec![&"score", &img, &img, &"--batch", &"0"], "--batch"),
        (vec![&"score", &img, &img, &"--batch", &"5000"], "--batch"),
        (
            vec![
                &"eval",
                &"--dataset",
                &"csv",
                &"--root",
                &d,
                &"--batch",
                &"0",
            ],
            "--batch",
        ),
        (
            vec![
                &"eval",
                &"--dataset",
                &"csv",
                &"--root",
                &d,
                &"--limit",
                &"0",
            ],
            "--limit",
        ),
        (
            vec![&"synth", &"--refs", &d, &"--out", &d, &"--crops", &"0"],
            "--crops",
        ),
        (
            vec![&"synth", &"--refs", &d, &"--out", &d, &"--crops", &"65"],
            "--crops",
        ),
        (
            vec![&"train-sorter", &"--out", &sorter, &"--steps", &"0"],
            "--steps",
        ),
        (
            vec![&"train-sorter", &"--out", &sorter, &"--lr", &"-1"],
            "--lr",
        ),
        (
            vec![&"train-sorter", &"--out", &sorter, &"--lr", &"NaN"],
            "--lr",
        ),
        (
            vec![&"train-sorter", &"--out", &sorter, &"--batch", &"0"],
            "--batch",
        ),
        (vec![&"tune", &"--reps", &"0"], "--reps"),
        (vec![&"tune", &"--limit", &"0"], "--limit"),
        (vec![&"bench", &"--iters", &"0"], "--iters"),
        (vec![&"bench", &"--batch", &"1,0"], "--batch"),
        (vec![&"bench", &"--dists-per-ref", &"0"], "--dists-per-ref"),
    ];
    for (args, option) in cases {
        let r = asna(&args, &[]);
        let shown = display_args(&args).join(" ");
        assert_eq!(r.code, 2, "{shown}: exit {}; {}", r.code, r.stderr);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains(&format!("{option} must be a number")),
            "{shown}: {}",
            r.stderr
        );
    }
    assert!(!sorter.exists(), "a sorter written");
}

#[test]
fn no_adapter() {
    let env = [
        ("VK_ICD_FILENAMES", "/nonexistent"),
        ("VK_DRIVER_FILES", "/nonexistent"),
        ("WGPU_BACKEND", "vulkan"),
    ];
    for args in [vec!["devices"], vec!["score", "a.png", "b.png"]] {
        let a: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let r = asna(&a, &env);
        fails(&r, &[], &["no GPU adapter", "mesa-vulkan-drivers"]);
    }
}

#[test]
fn unknown_wgpu_backend_is_named() {
    for (value, bad) in [("bogus", "bogus"), ("vulkan, Bogus ", "Bogus")] {
        let r = asna(&[&"score", &"a.png", &"b.png"], &[("WGPU_BACKEND", value)]);
        let line = fails(&r, &[], &[]);
        assert_eq!(
            line,
            format!(
                "error: WGPU_BACKEND={value}: unknown backend \"{bad}\" \
                 (expected one or more of vulkan, metal, dx12, gl, comma-separated)"
            )
        );
    }
}
