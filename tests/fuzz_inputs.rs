//! Property tests on untrusted input: mutated image files, pair lists, label files and
//! safetensors files must give `Ok` or a one-line `Err` naming the file, never a panic and never
//! a hang. Inputs start from valid seeds and are mutated with `asna::rng::Rng`, so every run is
//! reproducible. `ASNA_FUZZ_ITERS` sets the iterations per file-based target (default 3000; the
//! in-memory decoders get ten times as many) and `ASNA_FUZZ_SEED` the seed (default 0); a
//! failing input is written to the temp directory. `--nocapture` shows the counts.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use asna::data::{decode_rgb, open_dataset, DatasetFormat};
use asna::model::weights::TensorFile;
use asna::rng::Rng;
use image::{DynamicImage, ImageFormat, RgbImage};

/// One input slower than this is reported as a hang.
const SLOW: Duration = Duration::from_secs(10);

fn iters() -> usize {
    std::env::var("ASNA_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("ASNA_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-fuzz-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

// ---- mutation -------------------------------------------------------------------------

fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

fn pos(rng: &mut Rng, len: usize) -> usize {
    rng.below(len as u64 + 1) as usize
}

const INTERESTING: [u32; 14] = [
    0,
    1,
    2,
    7,
    8,
    0x7F,
    0x80,
    0xFF,
    288,
    0x7FFF,
    0xFFFF,
    16385,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
];

/// 1 to 4 random edits of `data`, some inserting tokens from `dict`.
fn mutate(rng: &mut Rng, seed: &[u8], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len();
        match rng.below(11) {
            0 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                v[i] = rng.below(256) as u8;
            }
            2 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                v[i] = *pick(rng, &[0u8, 1, 0x7F, 0x80, 0xFF, b'\n', b',', b'"']);
            }
            3 => v.truncate(pos(rng, n)),
            4 if n > 0 => {
                let a = pos(rng, n);
                let b = (a + 1 + rng.below(64) as usize).min(n);
                v.drain(a..b);
            }
            5 => {
                let at = pos(rng, n);
                let k = 1 + rng.below(16) as usize;
                let bytes: Vec<u8> = (0..k).map(|_| rng.below(256) as u8).collect();
                v.splice(at..at, bytes);
            }
            6 if n > 0 => {
                let a = rng.below(n as u64) as usize;
                let b = (a + 1 + rng.below(256) as usize).min(n);
                let piece = v[a..b].to_vec();
                let at = pos(rng, n);
                v.splice(at..at, piece);
            }
            7 | 8 if !dict.is_empty() => {
                let tok = pick(rng, dict).to_vec();
                let at = pos(rng, n);
                if rng.below(2) == 0 || at + tok.len() > n {
                    v.splice(at..at, tok);
                } else {
                    v[at..at + tok.len()].copy_from_slice(&tok);
                }
            }
            9 if n >= 4 => {
                let at = rng.below(n as u64 - 3) as usize;
                let x = *pick(rng, &INTERESTING);
                let b = if rng.below(2) == 0 {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                };
                let w = if rng.below(2) == 0 { 2 } else { 4 };
                let src = if w == 2 {
                    &b[if b[0] == 0 { 2 } else { 0 }..][..2]
                } else {
                    &b[..]
                };
                v[at..at + w].copy_from_slice(src);
            }
            10 if n > 0 => {
                // Cut the tail off: the most common damage in practice.
                let keep = rng.below(n as u64) as usize;
                v.truncate(keep.max(n / 2));
            }
            _ => {}
        }
    }
    v
}

/// Recomputes every PNG chunk CRC, so mutations get past the CRC check into the decoders.
fn fix_png_crcs(v: &mut [u8]) {
    let mut i = 8;
    while i + 12 <= v.len() {
        let len = u32::from_be_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]) as usize;
        let end = match i.checked_add(8 + len) {
            Some(e) if e + 4 <= v.len() => e,
            _ => return,
        };
        let crc = crc32(&v[i + 4..end]);
        v[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        i = end + 4;
    }
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

// ---- the harness ----------------------------------------------------------------------

/// Runs `check` on `n` generated inputs, catching panics; fails with the first few problems
/// (inputs written next to the report). Returns the number of cases run.
fn campaign(
    name: &str,
    n: usize,
    mut gen: impl FnMut(&mut Rng) -> Vec<u8>,
    mut check: impl FnMut(&[u8]) -> Result<bool, String>,
) -> usize {
    let dir = std::env::temp_dir().join(format!("asna-fuzz-failures-{name}"));
    let mut rng = Rng::derive(seed(), name.bytes().map(u64::from).sum());
    let mut problems = Vec::new();
    let mut accepted = 0usize;
    let start = Instant::now();
    for i in 0..n {
        let input = gen(&mut rng);
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let problem = match outcome {
            Ok(Ok(_)) if t.elapsed() > SLOW => Some(format!("slow: {:?}", t.elapsed())),
            Ok(Ok(ok)) => {
                accepted += ok as usize;
                None
            }
            Ok(Err(e)) => Some(e),
            Err(p) => Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
        };
        if let Some(p) = problem {
            fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("case{i}.bin"));
            fs::write(&file, &input).unwrap();
            problems.push(format!("case {i} ({}): {p}", file.display()));
            if problems.len() >= 5 {
                break;
            }
        }
    }
    let msg = format!(
        "fuzz {name}: {n} cases ({accepted} accepted, {} refused) in {:.2} s, seed {}",
        n - accepted,
        start.elapsed().as_secs_f64(),
        seed()
    );
    println!("{msg}");
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
    n
}

/// An error must be one line naming `who`.
fn check_err(e: &anyhow::Error, who: &str) -> Result<bool, String> {
    let s = format!("{e:#}");
    if s.contains('\n') {
        return Err(format!("error is not one line: {s:?}"));
    }
    if !s.contains(who) {
        return Err(format!("error does not name {who}: {s}"));
    }
    Ok(false)
}

// ---- images ---------------------------------------------------------------------------

fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, rng.below(256) as u8])
    })
}

fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut v = std::io::Cursor::new(Vec::new());
    img.write_to(&mut v, fmt).unwrap();
    v.into_inner()
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A big-endian EXIF block (TIFF header and one IFD entry: orientation).
fn exif(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01".to_vec();
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    t
}

/// A palette PNG with transparency and an eXIf chunk.
fn palette_png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push((y % 5) as u8); // every filter type
        raw.extend((0..w).map(|x| ((x + y) % 4) as u8));
    }
    let mut z = vec![0x78, 0x01, 1];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &v in &raw {
        a = (a + v as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"PLTE",
        &[0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255],
    );
    png_chunk(&mut out, b"tRNS", &[0, 128]);
    png_chunk(&mut out, b"eXIf", &exif(6));
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A JPEG with an EXIF orientation segment after SOI.
fn jpeg_with_exif(jpeg: &[u8]) -> Vec<u8> {
    let mut body = b"Exif\x00\x00".to_vec();
    body.extend_from_slice(&exif(8));
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn image_seeds() -> Vec<(ImageFormat, Vec<u8>)> {
    let rgb = DynamicImage::ImageRgb8(noise(37, 21, 1));
    let jpg = encode(&rgb, ImageFormat::Jpeg);
    vec![
        (ImageFormat::Png, encode(&rgb, ImageFormat::Png)),
        (
            ImageFormat::Png,
            encode(&rgb.to_luma8().into(), ImageFormat::Png),
        ),
        (
            ImageFormat::Png,
            encode(&rgb.to_luma_alpha8().into(), ImageFormat::Png),
        ),
        (
            ImageFormat::Png,
            encode(&rgb.to_rgba8().into(), ImageFormat::Png),
        ),
        (
            ImageFormat::Png,
            encode(&rgb.to_rgb16().into(), ImageFormat::Png),
        ),
        (ImageFormat::Png, palette_png(9, 7)),
        (ImageFormat::Jpeg, jpg.clone()),
        (ImageFormat::Jpeg, jpeg_with_exif(&jpg)),
        (
            ImageFormat::Jpeg,
            encode(&rgb.to_luma8().into(), ImageFormat::Jpeg),
        ),
        (ImageFormat::Bmp, encode(&rgb, ImageFormat::Bmp)),
        (
            ImageFormat::Bmp,
            encode(&rgb.to_rgba8().into(), ImageFormat::Bmp),
        ),
    ]
}

#[test]
fn fuzz_decode_rgb() {
    let seeds = image_seeds();
    for (f, s) in &seeds {
        decode_rgb(s, Path::new("seed")).unwrap_or_else(|e| panic!("seed {f:?}: {e}"));
    }
    let dict: &[&[u8]] = &[
        b"\x89PNG\r\n\x1a\n",
        b"IHDR",
        b"IDAT",
        b"IEND",
        b"PLTE",
        b"tRNS",
        b"eXIf",
        b"\xff\xd8",
        b"\xff\xd9",
        b"\xff\xda",
        b"\xff\xc0",
        b"\xff\xc2",
        b"\xff\xc4",
        b"\xff\xdb",
        b"\xff\xe1",
        b"\xff\xdd\x00\x04\x00\x01",
        b"BM",
        b"GIF89a",
        b"II*\x00",
        b"RIFF",
        b"Exif\x00\x00",
    ];
    let path = Path::new("fuzz/img.png");
    campaign(
        "decode_rgb",
        iters() * 10,
        |rng| {
            if rng.below(50) == 0 {
                return (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
            }
            let (fmt, s) = pick(rng, &seeds);
            let mut v = mutate(rng, s, dict);
            if *fmt == ImageFormat::Png && rng.below(2) == 0 {
                fix_png_crcs(&mut v);
            }
            v
        },
        |bytes| match decode_rgb(bytes, path) {
            Ok(img) if img.width() == 0 || img.height() == 0 => Err("empty image".into()),
            Ok(_) => Ok(true),
            Err(e) => check_err(&e, "fuzz/img.png"),
        },
    );
}

// ---- pair lists and label files -------------------------------------------------------

const TEXT_DICT: &[&[u8]] = &[
    b",",
    b"\"",
    b"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b"\xef\xbb\xbf",
    b"..",
    b"../",
    b"/",
    b"\\",
    b"C:",
    b"ref",
    b"dist",
    b"score",
    b"NaN",
    b"inf",
    b"-1e400",
    b"1e999",
    b" ",
    b"\t",
    b"\xff",
    b"\xc3\xa9",
    b"\x00",
    b"#",
    b"dis_img_path",
    b"ref_img_path",
    b"dis_type",
    b"a.png",
];

#[test]
fn fuzz_pair_lists() {
    let dir = temp_dir("pairs");
    let list = dir.join("pairs.csv");
    let seeds: Vec<&[u8]> = vec![
        b"ref,dist\na.png,b.png\nb.png,a.png\n",
        b"\xef\xbb\xbfref,dist\r\na.png,b.png\r\n",
        b"id,dist,ref,note\n1,\"b.png\",\"a.png\",\"x, y\"\n2,a.png,b.png,\n",
        b"REF , DIST\n sub/a.png , sub/b.png \n\n",
    ];
    let who = list.display().to_string();
    campaign(
        "read_pair_list",
        iters(),
        |rng| {
            let s = *pick(rng, &seeds);
            mutate(rng, s, TEXT_DICT)
        },
        |bytes| {
            fs::write(&list, bytes).unwrap();
            match asna::score::read_pair_list(&list) {
                Ok(pairs) if pairs.is_empty() => Err("Ok with no pairs".into()),
                Ok(_) => Ok(true),
                Err(e) => check_err(&e, &who),
            }
        },
    );
}

#[test]
fn fuzz_csv_labels() {
    let root = temp_dir("labels");
    for n in ["a.png", "b.png", "r.png", "s.png", "c d.png"] {
        fs::write(root.join(n), b"").unwrap();
    }
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/x.png"), b"").unwrap();
    let labels = root.join("labels.csv");
    let seeds: Vec<&[u8]> = vec![
        b"dis_img_path,ref_img_path,score\na.png,r.png,3.5\nb.png,r.png,1\n",
        b"\xef\xbb\xbfdis_type,score,ref_img_path,dis_img_path\r\nblur,2,s.png,\"c d.png\"\r\nnoise,-1e3,r.png,sub/x.png\r\n",
        b"DIS_IMG_PATH , REF_IMG_PATH , SCORE , extra\n\"a.png\" , \"r.png\" , 4 , \"q, r\"\n\nsub\\x.png,s.png,+0.5,\n",
    ];
    let who = labels.display().to_string();
    campaign(
        "open_dataset_csv",
        iters(),
        |rng| {
            let s = *pick(rng, &seeds);
            mutate(rng, s, TEXT_DICT)
        },
        |bytes| {
            fs::write(&labels, bytes).unwrap();
            match open_dataset(DatasetFormat::Csv, &root, Some(&labels), None) {
                Ok(ds) => {
                    for p in &ds.pairs {
                        if !p.score.is_finite() {
                            return Err(format!("non-finite score accepted at line {}", p.line));
                        }
                        for path in [&p.ref_path, &p.dist_path] {
                            let inside = path.starts_with(&root)
                                && !path
                                    .components()
                                    .any(|c| c == std::path::Component::ParentDir);
                            if !inside || !path.is_file() {
                                return Err(format!("accepted path {}", path.display()));
                            }
                        }
                    }
                    Ok(true)
                }
                Err(e) => check_err(&e, &who),
            }
        },
    );
}

// ---- safetensors ----------------------------------------------------------------------

fn tensor_seed() -> Vec<u8> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let f32s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = (0..4)
        .flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = (0..4)
        .flat_map(|i| half::bf16::from_f32(-(i as f32)).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = (0..3)
        .flat_map(|i| (i as f64 / 3.0).to_le_bytes())
        .collect();
    let u8s: Vec<u8> = (0..5).collect();
    let scalar: Vec<u8> = 1.5f32.to_le_bytes().to_vec();
    let empty: Vec<u8> = Vec::new();
    let views = vec![
        (
            "conv.weight",
            TensorView::new(Dtype::F32, vec![1, 2, 3, 1], &f32s).unwrap(),
        ),
        ("half", TensorView::new(Dtype::F16, vec![4], &f16s).unwrap()),
        (
            "brain",
            TensorView::new(Dtype::BF16, vec![2, 2], &bf16s).unwrap(),
        ),
        (
            "double",
            TensorView::new(Dtype::F64, vec![3], &f64s).unwrap(),
        ),
        ("bytes", TensorView::new(Dtype::U8, vec![5], &u8s).unwrap()),
        (
            "scalar",
            TensorView::new(Dtype::F32, vec![], &scalar).unwrap(),
        ),
        (
            "nothing",
            TensorView::new(Dtype::F32, vec![0, 3], &empty).unwrap(),
        ),
    ];
    let meta: std::collections::HashMap<String, String> = [
        ("architecture", asna::model::asna::ARCHITECTURE),
        ("spec_version", asna::model::asna::SPEC_VERSION),
        ("label_mean", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let file = safetensors::serialize(views, &Some(meta)).unwrap();
    // The header with its keys sorted (the metadata went through a HashMap), so that every run
    // mutates the same bytes.
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let h: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&file[8..8 + n]).unwrap();
    let mut text = serde_json::to_vec(&h).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&file[8 + n..]);
    out
}

/// Rewrites the JSON header of a safetensors file: dtypes, shapes, offsets, metadata.
fn mutate_header(rng: &mut Rng, file: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut h: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&file[8..8 + n]).unwrap();
    let data = &file[8 + n..];
    let names: Vec<String> = h.keys().cloned().collect();
    let huge = [
        0u64,
        1,
        2,
        3,
        4,
        7,
        8,
        24,
        1 << 31,
        1 << 32,
        1 << 62,
        u64::MAX / 2,
        u64::MAX,
    ];
    for _ in 0..1 + rng.below(3) {
        let name = pick(rng, &names).clone();
        let op = rng.below(8);
        match op {
            4 => {
                h.remove(&name);
                continue;
            }
            5 => {
                let v = pick(
                    rng,
                    &[
                        serde_json::json!(null),
                        serde_json::json!(1),
                        serde_json::json!({"a": [1]}),
                        serde_json::json!("x"),
                    ],
                )
                .clone();
                h.insert("__metadata__".into(), v);
                continue;
            }
            6 => {
                if let Some(e) = h.get(&name).cloned() {
                    h.insert(format!("{name}2"), e);
                }
                continue;
            }
            _ => {}
        }
        let Some(entry) = h.get_mut(&name).filter(|e| e.is_object()) else {
            continue;
        };
        match op {
            0 => {
                let dt = *pick(
                    rng,
                    &[
                        "F32", "F16", "BF16", "F64", "U8", "I8", "I64", "BOOL", "F8_E4M3", "Q4", "",
                    ],
                );
                entry["dtype"] = dt.into();
            }
            1 => {
                let dims = rng.below(5) as usize;
                let shape: Vec<u64> = (0..dims)
                    .map(|_| {
                        if rng.below(4) == 0 {
                            *pick(rng, &huge)
                        } else {
                            rng.below(8)
                        }
                    })
                    .collect();
                entry["shape"] = shape.into();
            }
            2 => {
                let a = if rng.below(2) == 0 {
                    *pick(rng, &huge)
                } else {
                    rng.below(data.len() as u64 + 8)
                };
                let b = if rng.below(2) == 0 {
                    *pick(rng, &huge)
                } else {
                    rng.below(data.len() as u64 + 8)
                };
                entry["data_offsets"] = vec![a, b].into();
            }
            3 => {
                entry["data_offsets"] = serde_json::json!([1, 2, 3]);
            }
            _ => {
                entry["shape"] = serde_json::json!([-1, 2]);
            }
        }
    }
    let mut text = serde_json::to_vec(&h).unwrap();
    while rng.below(2) == 0 && !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

#[test]
fn fuzz_tensor_files() {
    let seed_file = tensor_seed();
    let parsed = TensorFile::parse(&seed_file, "seed").unwrap();
    assert_eq!(parsed.floats.len(), 6);
    let dict: &[&[u8]] = &[
        b"\"dtype\"",
        b"\"shape\"",
        b"\"data_offsets\"",
        b"\"__metadata__\"",
        b"\"F32\"",
        b"\"F16\"",
        b"\"I64\"",
        b"[",
        b"]",
        b"{",
        b"}",
        b":",
        b",",
        b"\"",
        b"99999999999999999999",
        b"-1",
        b"1e3",
        b"\\u0000",
        b"\xff",
    ];
    campaign(
        "tensor_file_parse",
        iters() * 10,
        |rng| match rng.below(4) {
            0 => mutate_header(rng, &seed_file),
            1 => {
                let v = mutate_header(rng, &seed_file);
                mutate(rng, &v, dict)
            }
            2 => {
                // A length prefix that lies.
                let mut v = seed_file.clone();
                let n = *pick(
                    rng,
                    &[0u64, 1, 7, 8, 100, 1 << 20, 1 << 40, u64::MAX - 7, u64::MAX],
                );
                let n = if rng.below(2) == 0 {
                    n
                } else {
                    rng.below(seed_file.len() as u64 + 16)
                };
                v[..8].copy_from_slice(&n.to_le_bytes());
                v
            }
            _ => mutate(rng, &seed_file, dict),
        },
        |bytes| match TensorFile::parse(bytes, "fuzz.safetensors") {
            Ok(f) => {
                for (name, (shape, data)) in &f.floats {
                    if shape.iter().product::<usize>() != data.len() {
                        return Err(format!("{name}: shape {shape:?} but {} values", data.len()));
                    }
                }
                for (name, (shape, data)) in &f.bytes {
                    if shape.iter().product::<usize>() != data.len() {
                        return Err(format!("{name}: shape {shape:?} but {} bytes", data.len()));
                    }
                }
                Ok(true)
            }
            Err(e) => check_err(&e, "fuzz.safetensors"),
        },
    );
}
