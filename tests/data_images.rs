//! Image loading: every bad-input case gives a one-line error naming the file; every odd but
//! valid image gives the documented RGB result.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use asna::data::{check_min_size, decode_rgb, load_pair, load_rgb};
use image::RgbImage;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the bytes each thread holds allocated and the most it held, so that a test can
/// bound the memory of its own work while the other tests run on their threads.
struct PerThreadCount;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let v = live.get().saturating_add_signed(delta);
        live.set(v);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(v)));
    });
}

unsafe impl GlobalAlloc for PerThreadCount {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: PerThreadCount = PerThreadCount;

/// The most bytes this thread held at once during `f`, beyond what it held before.
fn peak_bytes_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, PEAK.with(|p| p.get()) - start)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "asna-test-img-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn err_of(path: &Path) -> String {
    let e = load_rgb(path).expect_err("expected an error").to_string();
    assert!(!e.contains('\n'), "error should be one line: {e}");
    assert!(
        e.contains(&path.display().to_string()),
        "error should name {}: {e}",
        path.display()
    );
    e
}

fn noise(w: u32, h: u32) -> RgbImage {
    let mut s = 12345u32;
    RgbImage::from_fn(w, h, |_, _| {
        let mut b = [0u8; 3];
        for v in &mut b {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *v = (s >> 16) as u8;
        }
        image::Rgb(b)
    })
}

fn encode(img: &image::DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut v = std::io::Cursor::new(Vec::new());
    img.write_to(&mut v, fmt).unwrap();
    v.into_inner()
}

// ---- a minimal PNG writer, to make palette images and crafted headers ----

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

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// zlib stream of stored (uncompressed) blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, b) in blocks.iter().enumerate() {
        out.push((i + 1 == blocks.len()) as u8);
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        out.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// PNG with the given header fields; `rows` are unfiltered scanlines (a filter byte 0 is added).
fn png_bytes(
    w: u32,
    h: u32,
    depth: u8,
    color: u8,
    extra: &[(&[u8; 4], Vec<u8>)],
    rows: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    for (k, d) in extra {
        chunk(&mut out, k, d);
    }
    let mut raw = Vec::new();
    for r in rows {
        raw.push(0);
        raw.extend_from_slice(r);
    }
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn missing_directory_and_empty_files() {
    let d = temp_dir("basic");
    let e = err_of(&d.join("nope.png"));
    assert!(e.contains("not found"), "{e}");
    fs::create_dir(d.join("dir.png")).unwrap();
    let e = err_of(&d.join("dir.png"));
    assert!(e.contains("is a directory"), "{e}");
    fs::write(d.join("empty.jpg"), b"").unwrap();
    let e = err_of(&d.join("empty.jpg"));
    assert!(e.contains("empty file"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn text_and_unsupported_formats() {
    let d = temp_dir("fmt");
    fs::write(d.join("notes.png"), b"this is not an image\n").unwrap();
    let e = err_of(&d.join("notes.png"));
    assert!(
        e.contains("not an image file despite its .png extension"),
        "{e}"
    );
    fs::write(d.join("anim.gif"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let e = err_of(&d.join("anim.gif"));
    assert!(
        e.contains("unsupported image format") && e.contains("Gif"),
        "{e}"
    );
    fs::write(d.join("icon.png"), b"\x00\x00\x01\x00\x01\x00\x10\x10").unwrap(); // ICO content, PNG name
    let e = err_of(&d.join("icon.png"));
    assert!(
        e.contains("unsupported image format") && e.contains("Ico"),
        "{e}"
    );
    // Content decides: a JPEG named .png and a PNG named .bmp both load.
    let img = image::DynamicImage::ImageRgb8(noise(16, 8));
    fs::write(
        d.join("really_jpeg.png"),
        encode(&img, image::ImageFormat::Jpeg),
    )
    .unwrap();
    assert_eq!(
        load_rgb(&d.join("really_jpeg.png")).unwrap().dimensions(),
        (16, 8)
    );
    fs::write(
        d.join("really_png.bmp"),
        encode(&img, image::ImageFormat::Png),
    )
    .unwrap();
    assert_eq!(load_rgb(&d.join("really_png.bmp")).unwrap(), noise(16, 8));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn truncated_and_corrupt_files() {
    let d = temp_dir("trunc");
    let img = image::DynamicImage::ImageRgb8(noise(64, 48));
    for (name, fmt, label) in [
        ("a.png", image::ImageFormat::Png, "PNG"),
        ("a.jpg", image::ImageFormat::Jpeg, "JPEG"),
        ("a.bmp", image::ImageFormat::Bmp, "BMP"),
    ] {
        let bytes = encode(&img, fmt);
        let good = d.join(name);
        fs::write(&good, &bytes).unwrap();
        assert_eq!(load_rgb(&good).unwrap().dimensions(), (64, 48));
        for cut in [bytes.len() / 2, 40, 10] {
            let p = d.join(format!("cut{cut}_{name}"));
            fs::write(&p, &bytes[..cut]).unwrap();
            let e = err_of(&p);
            assert!(
                e.contains("truncated or corrupt") && e.contains(label),
                "{e}"
            );
        }
    }
    // Corrupt PNG data (CRC no longer matches).
    let mut bytes = encode(&img, image::ImageFormat::Png);
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5A;
    }
    fs::write(d.join("bad.png"), &bytes).unwrap();
    let e = err_of(&d.join("bad.png"));
    assert!(e.contains("corrupt PNG"), "{e}");
    // A JPEG header followed by garbage.
    let mut bytes = encode(&img, image::ImageFormat::Jpeg)[..200].to_vec();
    bytes.extend(std::iter::repeat_n(0x42u8, 300));
    fs::write(d.join("bad.jpg"), &bytes).unwrap();
    let e = err_of(&d.join("bad.jpg"));
    assert!(e.contains("JPEG"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn gray_alpha_and_sixteen_bit_conversions() {
    let d = temp_dir("conv");
    let gray = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 60 + y) as u8]));
    fs::write(
        d.join("g.png"),
        encode(&gray.clone().into(), image::ImageFormat::Png),
    )
    .unwrap();
    let g = load_rgb(&d.join("g.png")).unwrap();
    assert_eq!(g.get_pixel(3, 2).0, [182, 182, 182]);

    let ga = image::GrayAlphaImage::from_fn(4, 3, |x, _| image::LumaA([(x * 50) as u8, 0]));
    fs::write(
        d.join("ga.png"),
        encode(&ga.into(), image::ImageFormat::Png),
    )
    .unwrap();
    assert_eq!(
        load_rgb(&d.join("ga.png")).unwrap().get_pixel(2, 0).0,
        [100, 100, 100]
    );

    // RGBA: alpha dropped, colours kept as stored even where fully transparent.
    let rgba = image::RgbaImage::from_fn(4, 3, |x, y| {
        image::Rgba([10 * x as u8, 20 * y as u8, 200, (x * 80) as u8])
    });
    fs::write(
        d.join("rgba.png"),
        encode(&rgba.into(), image::ImageFormat::Png),
    )
    .unwrap();
    let r = load_rgb(&d.join("rgba.png")).unwrap();
    assert_eq!(r.get_pixel(0, 2).0, [0, 40, 200]);
    assert_eq!(r.get_pixel(3, 1).0, [30, 20, 200]);

    // 16-bit: v -> round(v / 257).
    let vals: [u16; 8] = [0, 128, 129, 385, 386, 32896, 65406, 65535];
    let want: Vec<u8> = vals
        .iter()
        .map(|&v| (v as f64 / 257.0).round() as u8)
        .collect();
    assert_eq!(want, [0, 0, 1, 1, 2, 128, 254, 255]);
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(8, 1, |x, _| {
        image::Rgb([vals[x as usize], vals[7 - x as usize], 257 * 7])
    });
    fs::write(
        d.join("c16.png"),
        encode(&rgb16.into(), image::ImageFormat::Png),
    )
    .unwrap();
    let c = load_rgb(&d.join("c16.png")).unwrap();
    for x in 0..8 {
        assert_eq!(
            c.get_pixel(x, 0).0,
            [want[x as usize], want[7 - x as usize], 7]
        );
    }
    let l16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(8, 1, |x, _| {
        image::Luma([vals[x as usize]])
    });
    fs::write(
        d.join("g16.png"),
        encode(&l16.into(), image::ImageFormat::Png),
    )
    .unwrap();
    let g = load_rgb(&d.join("g16.png")).unwrap();
    assert_eq!(g.get_pixel(2, 0).0, [1, 1, 1]);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn palette_png_with_and_without_transparency() {
    let d = temp_dir("pal");
    let plte = vec![255, 0, 0, 0, 255, 0, 0, 0, 255];
    let rows = vec![vec![0u8, 1, 2], vec![2u8, 1, 0]];
    fs::write(
        d.join("p.png"),
        png_bytes(3, 2, 8, 3, &[(b"PLTE", plte.clone())], &rows),
    )
    .unwrap();
    let p = load_rgb(&d.join("p.png")).unwrap();
    assert_eq!(p.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(p.get_pixel(1, 1).0, [0, 255, 0]);
    assert_eq!(p.get_pixel(0, 1).0, [0, 0, 255]);
    let trns = vec![0u8, 128, 255];
    fs::write(
        d.join("pt.png"),
        png_bytes(3, 2, 8, 3, &[(b"PLTE", plte), (b"tRNS", trns)], &rows),
    )
    .unwrap();
    let p = load_rgb(&d.join("pt.png")).unwrap();
    assert_eq!(p.get_pixel(0, 0).0, [255, 0, 0]); // alpha 0 there: colour still kept
    assert_eq!(p.dimensions(), (3, 2));
    let _ = fs::remove_dir_all(&d);
}

/// Inserts an EXIF APP1 segment with the given orientation right after the JPEG's SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn jpeg_exif_orientation_is_applied() {
    let d = temp_dir("exif");
    // 64x32: left half red, right half blue.
    let img = RgbImage::from_fn(64, 32, |x, _| {
        if x < 32 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let jpeg = encode(&img.into(), image::ImageFormat::Jpeg);
    fs::write(d.join("o1.jpg"), with_exif_orientation(&jpeg, 1)).unwrap();
    let o1 = load_rgb(&d.join("o1.jpg")).unwrap();
    assert_eq!(o1.dimensions(), (64, 32));
    // Orientation 6: displayed rotated 90 degrees clockwise, so the left (red) half is on top.
    fs::write(d.join("o6.jpg"), with_exif_orientation(&jpeg, 6)).unwrap();
    let o6 = load_rgb(&d.join("o6.jpg")).unwrap();
    assert_eq!(o6.dimensions(), (32, 64));
    let top = o6.get_pixel(16, 8).0;
    let bottom = o6.get_pixel(16, 56).0;
    assert!(top[0] > 200 && top[2] < 60, "{top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "{bottom:?}");
    // Orientation 3 (180 degrees): red on the right.
    fs::write(d.join("o3.jpg"), with_exif_orientation(&jpeg, 3)).unwrap();
    let o3 = load_rgb(&d.join("o3.jpg")).unwrap();
    assert!(o3.get_pixel(56, 16).0[0] > 200 && o3.get_pixel(8, 16).0[2] > 200);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn decompression_bombs_are_refused() {
    let d = temp_dir("bomb");
    // PNG headers claiming huge sizes (valid CRCs, tiny data).
    for (w, h) in [
        (16385u32, 1u32),
        (1, 20000),
        (16384, 16385),
        (100_000, 100_000),
    ] {
        let p = d.join(format!("big{w}x{h}.png"));
        fs::write(&p, png_bytes(w, h, 8, 2, &[], &[vec![0; 3]])).unwrap();
        let e = err_of(&p);
        // The size as the message states it (the file name also holds it).
        assert!(
            e.contains("decompression bomb") && e.contains(&format!("image is {w}x{h} pixels")),
            "{e}"
        );
    }
    // BMP header claiming 30000 x 30000.
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&(54u32 + 16).to_le_bytes());
    bmp.extend_from_slice(&[0, 0, 0, 0]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&30000i32.to_le_bytes());
    bmp.extend_from_slice(&30000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend_from_slice(&[0; 16]);
    let p = d.join("big.bmp");
    fs::write(&p, &bmp).unwrap();
    let e = err_of(&p);
    assert!(
        e.contains("decompression bomb") && e.contains("30000x30000"),
        "the size limit, not another BMP error: {e}"
    );
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn pairs_and_minimum_size() {
    let d = temp_dir("pair");
    let a = d.join("ref.png");
    let b = d.join("dist.bmp");
    noise(300, 290).save(&a).unwrap();
    noise(300, 289).save(&b).unwrap();
    let e = load_pair(&a, &b).unwrap_err().to_string();
    assert!(
        e.contains(&a.display().to_string())
            && e.contains(&b.display().to_string())
            && e.contains("300x290")
            && e.contains("300x289"),
        "{e}"
    );
    noise(300, 290).save(&b).unwrap();
    let (r, t) = load_pair(&a, &b).unwrap();
    assert_eq!(r, t);
    assert!(check_min_size(&r, &a, 288).is_ok());
    let small = noise(287, 400);
    let e = check_min_size(&small, &a, 288).unwrap_err().to_string();
    assert!(
        e.contains("ref.png") && e.contains("287x400") && e.contains("288x288"),
        "{e}"
    );
    assert!(check_min_size(&noise(400, 200), &a, 288).is_err());
    let e = load_pair(&a, &d.join("absent.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.png"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn webp_lossless_and_lossy_are_read_and_truncation_refused() {
    let d = temp_dir("webp");
    // Lossless, made here by the image crate's encoder: the pixels come back exactly.
    let img = noise(37, 21);
    let lossless = encode(
        &image::DynamicImage::ImageRgb8(img.clone()),
        image::ImageFormat::WebP,
    );
    let p = d.join("photo.webp");
    fs::write(&p, &lossless).unwrap();
    assert_eq!(load_rgb(&p).unwrap(), img);
    // Named as a PNG, still read by content.
    fs::write(d.join("really_webp.png"), &lossless).unwrap();
    assert_eq!(load_rgb(&d.join("really_webp.png")).unwrap(), img);
    // With an alpha channel: the colours are kept as stored.
    let rgba = image::RgbaImage::from_fn(9, 5, |x, y| {
        image::Rgba([x as u8 * 20, y as u8 * 40, 7, (x * y) as u8])
    });
    fs::write(
        d.join("alpha.webp"),
        encode(
            &image::DynamicImage::ImageRgba8(rgba.clone()),
            image::ImageFormat::WebP,
        ),
    )
    .unwrap();
    let got = load_rgb(&d.join("alpha.webp")).unwrap();
    assert_eq!(got.get_pixel(8, 4).0, [160, 160, 7]);
    assert_eq!(got.get_pixel(3, 1).0, [60, 40, 7]);
    // Lossy (VP8): a 16x12 gradient (R = 16x, G = 20y, B = 128) that libwebp encoded at
    // quality 90; libwebp decodes it to the three pixels checked below.
    fs::write(d.join("lossy.webp"), WEBP_LOSSY_GRADIENT).unwrap();
    let got = load_rgb(&d.join("lossy.webp")).unwrap();
    assert_eq!(got.dimensions(), (16, 12));
    for ((x, y), libwebp) in [
        ((0, 0), [0, 3, 120]),
        ((15, 11), [244, 218, 140]),
        ((8, 6), [128, 121, 125]),
    ] {
        let px = got.get_pixel(x, y).0;
        for c in 0..3 {
            assert!(
                (px[c] as i32 - libwebp[c]).abs() <= 3,
                "({x}, {y}): {px:?} against libwebp's {libwebp:?}"
            );
        }
    }
    let err: f64 = got
        .enumerate_pixels()
        .map(|(x, y, p)| {
            let want = [16.0 * x as f64, 20.0 * y as f64, 128.0];
            (0..3).map(|c| (p.0[c] as f64 - want[c]).abs()).sum::<f64>()
        })
        .sum::<f64>()
        / (16.0 * 12.0 * 3.0);
    assert!(err < 8.0, "mean error {err} against the gradient encoded");
    // Cut short anywhere, or with a RIFF length past the end: refused as truncated.
    for cut in [lossless.len() - 1, lossless.len() / 2, 12] {
        let p = d.join(format!("cut{cut}.webp"));
        fs::write(&p, &lossless[..cut]).unwrap();
        let e = err_of(&p);
        assert!(e.contains("truncated or corrupt WebP"), "{e}");
    }
    let mut longer = lossless.clone();
    let declared = u32::from_le_bytes(longer[4..8].try_into().unwrap()) + 2;
    longer[4..8].copy_from_slice(&declared.to_le_bytes());
    fs::write(d.join("long.webp"), &longer).unwrap();
    let e = err_of(&d.join("long.webp"));
    assert!(e.contains("its RIFF header declares"), "{e}");
    // A VP8X header declaring 20000 x 20000 is refused before any pixel is decoded.
    // (It is followed by the small lossless image's own chunk, as a decoder expects one.)
    let image_chunk = &lossless[12..];
    let mut vp8x = b"RIFF".to_vec();
    vp8x.extend_from_slice(&(22 + image_chunk.len() as u32).to_le_bytes());
    vp8x.extend_from_slice(b"WEBPVP8X");
    vp8x.extend_from_slice(&10u32.to_le_bytes());
    vp8x.extend_from_slice(&[0, 0, 0, 0]);
    vp8x.extend_from_slice(&(20000u32 - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(20000u32 - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(image_chunk);
    fs::write(d.join("big.webp"), &vp8x).unwrap();
    let e = err_of(&d.join("big.webp"));
    assert!(
        e.contains("decompression bomb") && e.contains("20000x20000"),
        "{e}"
    );
    let _ = fs::remove_dir_all(&d);
}

/// The lossy WebP of `webp_lossless_and_lossy_are_read_and_truncation_refused` (110 bytes).
const WEBP_LOSSY_GRADIENT: &[u8] = &[
    0x52, 0x49, 0x46, 0x46, 0x66, 0x00, 0x00, 0x00, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x20,
    0x5a, 0x00, 0x00, 0x00, 0x30, 0x03, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x0c, 0x00, 0x00, 0xc0,
    0x12, 0x25, 0xb0, 0x02, 0x74, 0xba, 0x01, 0x44, 0x03, 0xe4, 0x03, 0x78, 0x03, 0x43, 0xfd, 0xb6,
    0x00, 0x26, 0xe1, 0x0d, 0xac, 0x80, 0x00, 0xfe, 0xff, 0x97, 0xc6, 0x97, 0x3d, 0x07, 0x72, 0x38,
    0x57, 0x2c, 0xbb, 0x72, 0x50, 0xc4, 0xfa, 0x22, 0x4e, 0x36, 0xcf, 0xfe, 0xa2, 0x2d, 0xa7, 0x81,
    0x6f, 0xb2, 0x3b, 0x78, 0xd7, 0xf6, 0x21, 0x23, 0x45, 0xff, 0x8c, 0x9a, 0x61, 0x2f, 0xff, 0x0b,
    0xf1, 0xa6, 0x12, 0xff, 0xf5, 0x27, 0xc7, 0x71, 0x20, 0x2b, 0xbf, 0xc1, 0x00, 0x00,
];

/// zlib stream of `n` zero bytes in fixed-Huffman deflate: one literal, then matches of 258
/// bytes at distance 1 (13 bits each), so that a few megabytes inflate to gigabytes.
fn zlib_zeros(n: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        len: u32,
    }
    impl Bits {
        /// `count` bits of `value`, least significant first (deflate's order for headers).
        fn put(&mut self, value: u64, count: u32) {
            self.acc |= value << self.len;
            self.len += count;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u64, count: u32) {
            let reversed = (0..count).fold(0, |r, i| r | ((code >> i) & 1) << (count - 1 - i));
            self.put(reversed, count);
        }
    }
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        len: 0,
    };
    bits.put(1, 1); // final block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0b0011_0000, 8); // literal 0
    let matches = (n - 1) / 258;
    for _ in 0..matches {
        bits.code(0b1100_0101, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
    }
    for _ in 0..(n - 1 - matches * 258) {
        bits.code(0b0011_0000, 8);
    }
    bits.code(0, 7); // end of block
    if bits.len > 0 {
        bits.put(0, 8 - bits.len);
    }
    let adler = (((n % 65521) as u32) << 16) | 1;
    bits.out.extend_from_slice(&adler.to_be_bytes());
    bits.out
}

#[test]
fn png_ancillary_chunks_are_not_inflated() {
    let d = temp_dir("iccp");
    let rows: Vec<Vec<u8>> = (0..4u8)
        .map(|y| (0..12).map(|x| x * 20 + y).collect())
        .collect();
    let plain = d.join("plain.png");
    fs::write(&plain, png_bytes(4, 4, 8, 2, &[], &rows)).unwrap();
    // An ICC profile that inflates to 3 GiB and a compressed text chunk of 1 GiB (26 MB of
    // file): asna never uses them, so they are skipped, not inflated (the decoder would
    // inflate the profile up to its 2 GiB allocation limit, and succeed).
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(&zlib_zeros(3 << 30));
    let mut ztxt = b"Comment\0\0".to_vec();
    ztxt.extend_from_slice(&zlib_zeros(1 << 30));
    let p = d.join("icc-bomb.png");
    fs::write(
        &p,
        png_bytes(4, 4, 8, 2, &[(b"iCCP", iccp), (b"zTXt", ztxt)], &rows),
    )
    .unwrap();
    let size = fs::metadata(&p).unwrap().len() as usize;
    assert!(size < 32 << 20);
    let (img, peak) = peak_bytes_of(|| load_rgb(&p).expect("the pixels decode without the chunks"));
    assert_eq!(img, load_rgb(&plain).unwrap());
    // The file's bytes, and a little more: never the chunks' contents.
    assert!(
        peak < size + (8 << 20),
        "{peak} bytes held to decode a {size}-byte file"
    );
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn a_jpeg_frame_larger_than_its_scan_data_is_refused() {
    let d = temp_dir("jpeg-frame");
    let jpeg = |img: &RgbImage, q: u8| {
        let mut v = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut v, q)
            .encode_image(img)
            .unwrap();
        v
    };
    let full = jpeg(&noise(320, 240), 85);
    // The frame header patched to declare 16384x16384: about 51 KB of scan data for 805 MB
    // of pixels, which the decoder would fill with grey.
    let mut big = full.clone();
    let sof = big.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    big[sof + 5..sof + 9].copy_from_slice(&[0x40, 0x00, 0x40, 0x00]);
    let p = d.join("declared-16384.jpg");
    fs::write(&p, &big).unwrap();
    let e = err_of(&p);
    assert!(
        e.contains("truncated or corrupt JPEG") && e.contains("16384x16384"),
        "{e}"
    );
    // The smallest honest scans still read: flat images at quality 1, gray and colour, odd
    // sizes, 4:2:0 and 4:4:4.
    let flat = RgbImage::from_pixel(1001, 777, image::Rgb([128, 128, 128]));
    for (name, bytes) in [
        ("flat.jpg", jpeg(&flat, 1)),
        (
            "flat-gray.jpg",
            encode(
                &image::DynamicImage::ImageLuma8(
                    image::DynamicImage::ImageRgb8(flat.clone()).to_luma8(),
                ),
                image::ImageFormat::Jpeg,
            ),
        ),
        ("noise.jpg", full),
    ] {
        let p = d.join(name);
        fs::write(&p, &bytes).unwrap();
        load_rgb(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let _ = fs::remove_dir_all(&d);
}

/// The JPEG encodings of `tests/data/jpeg/` (made by `tools/jpeg_fixtures.py` with Pillow:
/// baseline and progressive; 4:2:0, 4:2:2, 4:4:4 and gray; optimised tables; restart intervals;
/// 1x1 and odd sizes) read as the `image` crate decodes them, and a cut at any byte of their
/// scans, with an end-of-image marker appended, is refused: mid-scan, at a scan boundary of a
/// progressive file (its refinements unfinished), or inside a table between scans.
#[test]
fn every_cut_of_a_jpeg_s_scans_is_refused_even_with_an_end_marker() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jpeg");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 9, "{paths:?}");
    for path in &paths {
        let bytes = fs::read(path).unwrap();
        let img = load_rgb(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(img, image::load_from_memory(&bytes).unwrap().to_rgb8());
        let first_scan = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let end = bytes.len() - 2;
        assert_eq!(bytes[end..], [0xFF, 0xD9]);
        for cut in first_scan..end {
            let mut cut_file = bytes[..cut].to_vec();
            cut_file.extend_from_slice(&[0xFF, 0xD9]);
            match decode_rgb(&cut_file, path) {
                Ok(_) => panic!(
                    "{} cut after {cut} of its {} bytes was decoded",
                    path.display(),
                    bytes.len()
                ),
                Err(e) => assert!(e.to_string().contains("truncated or corrupt JPEG"), "{e}"),
            }
        }
    }
    // A large baseline file cut in half, and the whole of it.
    let mut full = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut full, 90)
        .encode_image(&noise(640, 480))
        .unwrap();
    let mut half = full[..full.len() / 2].to_vec();
    half.extend_from_slice(&[0xFF, 0xD9]);
    let e = decode_rgb(&half, Path::new("half.jpg"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("half.jpg: truncated or corrupt JPEG: its sequential frame declares 640x480")
            && e.contains("of its 4800 MCUs"),
        "{e}"
    );
    decode_rgb(&full, Path::new("full.jpg")).unwrap();
}

#[test]
fn tiff_8_and_16_bit_rgb_and_gray_are_read_and_truncation_refused() {
    use image::{DynamicImage, ImageBuffer, Luma, Rgb};
    let d = temp_dir("tiff");
    let rgb = noise(37, 23);
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(37, 23, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        // 16-bit samples whose rounding to 8 bits is known: v * 257 + a little.
        Rgb([
            (p[0] as u16 * 257).saturating_add(100),
            p[1] as u16 * 257,
            (p[2] as u16 * 257).saturating_add(128),
        ])
    });
    let gray = DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
    let gray16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(37, 23, |x, y| {
        Luma([gray.get_pixel(x, y).0[0] as u16 * 257])
    });
    let gray_rgb = RgbImage::from_fn(37, 23, |x, y| {
        let v = gray.get_pixel(x, y).0[0];
        image::Rgb([v, v, v])
    });
    let round16 = RgbImage::from_fn(37, 23, |x, y| {
        let p = rgb16.get_pixel(x, y).0;
        let r = |v: u16| ((v as u32 + 128) / 257) as u8;
        image::Rgb([r(p[0]), r(p[1]), r(p[2])])
    });
    let cases = [
        (
            "rgb8.tif",
            DynamicImage::ImageRgb8(rgb.clone()),
            rgb.clone(),
        ),
        ("rgb16.tiff", DynamicImage::ImageRgb16(rgb16), round16),
        (
            "gray8.tif",
            DynamicImage::ImageLuma8(gray.clone()),
            gray_rgb.clone(),
        ),
        ("gray16.tif", DynamicImage::ImageLuma16(gray16), gray_rgb),
    ];
    for (name, img, want) in cases {
        let bytes = encode(&img, image::ImageFormat::Tiff);
        let p = d.join(name);
        fs::write(&p, &bytes).unwrap();
        assert_eq!(load_rgb(&p).unwrap(), want, "{name}");
        // Content decides, not the name.
        let q = d.join(format!("{name}.png"));
        fs::write(&q, &bytes).unwrap();
        assert_eq!(load_rgb(&q).unwrap(), want, "{name} named .png");
        // Cut short: the strips end before the pixels do.
        let cut = d.join(format!("cut-{name}"));
        fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = err_of(&cut);
        assert!(e.contains("TIFF"), "{e}");
    }
    // A header declaring 20000 x 20000: refused by size before any strip is read.
    let mut big = encode(
        &DynamicImage::ImageRgb8(noise(4, 4)),
        image::ImageFormat::Tiff,
    );
    let ifd = u32::from_le_bytes([big[4], big[5], big[6], big[7]]) as usize;
    let entries = u16::from_le_bytes([big[ifd], big[ifd + 1]]) as usize;
    for e in 0..entries {
        let at = ifd + 2 + 12 * e;
        let tag = u16::from_le_bytes([big[at], big[at + 1]]);
        if tag == 256 || tag == 257 {
            // ImageWidth, ImageLength: SHORT or LONG, the value in place.
            let kind = u16::from_le_bytes([big[at + 2], big[at + 3]]);
            if kind == 3 {
                big[at + 8..at + 10].copy_from_slice(&20000u16.to_le_bytes());
            } else {
                big[at + 8..at + 12].copy_from_slice(&20000u32.to_le_bytes());
            }
        }
    }
    let p = d.join("big.tif");
    fs::write(&p, &big).unwrap();
    let e = err_of(&p);
    assert!(
        e.contains("20000x20000") && e.contains("decompression bomb"),
        "{e}"
    );
    let _ = fs::remove_dir_all(&d);
}
