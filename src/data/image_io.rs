//! Image decoding for asna: PNG, JPEG, WebP, TIFF and BMP, recognised by content, always returned as 8-bit RGB.

use std::fs;
use std::io::Cursor;
use std::path::Path;

use anyhow::bail;

use super::jpeg_scan;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

/// Largest accepted width or height (decompression-bomb guard).
pub const MAX_SIDE: u32 = 16384;
/// Largest accepted number of pixels (decompression-bomb guard), 2^28.
pub const MAX_PIXELS: u64 = 1 << 28;

/// Loads an image file as 8-bit RGB.
///
/// * The format is recognised from the file's content (magic bytes), not its extension:
///   a JPEG named `x.png` decodes as JPEG; a text file named `x.png` is refused.
///   PNG, JPEG, WebP (lossy and lossless), TIFF (8, 16 and 32-bit float samples, RGB and gray,
///   uncompressed, LZW, Deflate or PackBits) and BMP are read, by the `image` crate's pure-Rust
///   decoders; other recognised formats (GIF, ICO, ...) are refused.
/// * Grayscale is replicated to R=G=B.
/// * **Alpha is dropped**: for RGBA, grayscale+alpha and palette PNGs with transparency the colour
///   channels are kept exactly as stored (no compositing over a background, no premultiplication).
/// * 16-bit samples are reduced to 8 bits by rounding `v / 257`.
/// * **EXIF orientation is applied** (JPEG, and PNG `eXIf`), so the pixels are as a viewer shows them.
/// * Images wider or taller than [`MAX_SIDE`] or with more than [`MAX_PIXELS`] pixels are refused
///   before any pixel is decoded.
/// * Truncated files are refused rather than returned with filler: a JPEG without its
///   end-of-image marker, or whose Huffman-coded scans end before its frame's last block (or,
///   progressive, before its last refinement), and a WebP file shorter than its RIFF header
///   declares.
///
/// Every error is one line that names the file.
pub fn load_rgb(path: &Path) -> anyhow::Result<RgbImage> {
    let p = path.display();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{p}: image file not found"),
        Err(e) => bail!("{p}: cannot open image: {e}"),
    };
    if meta.is_dir() {
        bail!("{p}: is a directory, not an image file");
    }
    if meta.len() == 0 {
        bail!("{p}: empty file (0 bytes), not an image");
    }
    let bytes = fs::read(path).map_err(|e| anyhow::anyhow!("{p}: cannot read image: {e}"))?;
    decode_rgb(&bytes, path)
}

/// Decodes an in-memory image file (same rules as [`load_rgb`]); `path` is only used in messages.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> anyhow::Result<RgbImage> {
    let p = path.display();
    if bytes.is_empty() {
        bail!("{p}: empty file (0 bytes), not an image");
    }
    let format = match image::guess_format(bytes) {
        Ok(f) => f,
        Err(_) => {
            let ext = path
                .extension()
                .map(|e| format!(" despite its .{} extension", e.to_string_lossy()))
                .unwrap_or_default();
            bail!("{p}: not an image file{ext} (content is not PNG, JPEG, WebP, TIFF or BMP)")
        }
    };
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Tiff
            | ImageFormat::Bmp
    ) || !format.reading_enabled()
    {
        bail!(
            "{p}: unsupported image format {format:?} (asna reads PNG, JPEG, WebP, TIFF and BMP)"
        );
    }
    if format == ImageFormat::Jpeg {
        if !jpeg_has_end_marker(bytes) {
            bail!("{p}: truncated or corrupt JPEG (no end-of-image marker)");
        }
        jpeg_scan::check_entropy_data(bytes, MAX_PIXELS)
            .map_err(|why| anyhow::anyhow!("{p}: truncated or corrupt JPEG: {why}"))?;
    }
    let stripped;
    let bytes = if format == ImageFormat::Png {
        stripped = png_without_ancillary_chunks(bytes);
        stripped.as_ref()
    } else {
        bytes
    };
    if format == ImageFormat::WebP {
        check_webp_length(bytes, path)?;
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    // Width/height are checked below with a clearer message; this only caps allocations
    // (2^28 pixels of 16-bit RGBA plus slack).
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    reader.limits(limits);
    let fname = format_name(format);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(path, fname, e))?;
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE || (w as u64) * (h as u64) > MAX_PIXELS {
        bail!(
            "{p}: image is {w}x{h} pixels, over the limit of {MAX_SIDE}x{MAX_SIDE} and {MAX_PIXELS} pixels \
             (refused as a possible decompression bomb)"
        );
    }
    if w == 0 || h == 0 {
        bail!("{p}: image has zero size ({w}x{h})");
    }
    // A damaged EXIF block should not make an otherwise good image unreadable.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, fname, e))?;
    img.apply_orientation(orientation);
    Ok(to_rgb8(img))
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::WebP => "WebP",
        _ => "image",
    }
}

fn decode_error(path: &Path, fname: &str, e: image::ImageError) -> anyhow::Error {
    let msg = one_line(&e.to_string());
    match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "{}: {fname} image exceeds the decoder's memory limit ({msg}; refused as a possible decompression bomb)",
            path.display()
        ),
        _ => anyhow::anyhow!("{}: truncated or corrupt {fname} file: {msg}", path.display()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A WebP file is one RIFF chunk whose header declares its length: a file cut short is refused
/// here, before the decoder could fill the missing pixels.
fn check_webp_length(b: &[u8], path: &Path) -> anyhow::Result<()> {
    let declared = b
        .get(4..8)
        .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as u64 + 8);
    match declared {
        Some(len) if len <= b.len() as u64 => Ok(()),
        Some(len) => bail!(
            "{}: truncated or corrupt WebP file: {} bytes, its RIFF header declares {len}",
            path.display(),
            b.len()
        ),
        None => bail!(
            "{}: truncated or corrupt WebP file: no RIFF header",
            path.display()
        ),
    }
}

/// True when the JPEG has an end-of-image marker (FF D9) after its first start-of-scan segment.
/// Entropy-coded data cannot contain FF D9, so a file cut short inside the scan data has none.
fn jpeg_has_end_marker(b: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            return false; // not at a marker: corrupt header
        }
        let m = b[i + 1];
        if m == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if m == 0xD9 {
            return true;
        }
        if m == 0x01 || (0xD0..=0xD7).contains(&m) {
            i += 2;
            continue;
        }
        if i + 3 >= b.len() {
            return false;
        }
        let len = ((b[i + 2] as usize) << 8) | b[i + 3] as usize;
        if m == 0xDA {
            let start = i + 2 + len;
            return start < b.len() && b[start..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// The PNG chunks kept for decoding: the critical ones, and an EXIF block (orientation) of at
/// most this size. Every other ancillary chunk (ICC profiles, compressed text, ...) is dropped
/// unread: asna uses none of them, and a compressed one may inflate to gigabytes.
const MAX_PNG_EXIF: usize = 64 << 10;

/// `b` without its ancillary chunks but a small `eXIf`; unchanged (borrowed) when it has none,
/// or when its chunk structure is broken (the decoder then says how).
fn png_without_ancillary_chunks(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut kept = Vec::new();
    let mut ranges = Vec::new();
    let mut i = 8; // after the signature
    let mut dropped = false;
    while i + 12 <= b.len() {
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let Some(end) = (i + 12).checked_add(len).filter(|&e| e <= b.len()) else {
            return std::borrow::Cow::Borrowed(b);
        };
        let kind = &b[i + 4..i + 8];
        let critical = kind[0].is_ascii_uppercase();
        if critical || (kind == b"eXIf" && len <= MAX_PNG_EXIF) {
            ranges.push(i..end);
        } else {
            dropped = true;
        }
        i = end;
        if kind == b"IEND" {
            break;
        }
    }
    if !dropped {
        return std::borrow::Cow::Borrowed(b);
    }
    kept.extend_from_slice(&b[..8]);
    for r in ranges {
        kept.extend_from_slice(&b[r]);
    }
    std::borrow::Cow::Owned(kept)
}

/// 8-bit RGB from any decoded image: alpha dropped, gray replicated, 16-bit rounded (v / 257).
fn to_rgb8(img: DynamicImage) -> RgbImage {
    fn r16(v: u16) -> u8 {
        ((v as u32 + 128) / 257) as u8
    }
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageRgba8(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y).0;
            image::Rgb([p[0], p[1], p[2]])
        }),
        DynamicImage::ImageLuma8(i) => RgbImage::from_fn(w, h, |x, y| {
            let v = i.get_pixel(x, y).0[0];
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA8(i) => RgbImage::from_fn(w, h, |x, y| {
            let v = i.get_pixel(x, y).0[0];
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLuma16(i) => RgbImage::from_fn(w, h, |x, y| {
            let v = r16(i.get_pixel(x, y).0[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA16(i) => RgbImage::from_fn(w, h, |x, y| {
            let v = r16(i.get_pixel(x, y).0[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageRgb16(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y).0;
            image::Rgb([r16(p[0]), r16(p[1]), r16(p[2])])
        }),
        DynamicImage::ImageRgba16(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y).0;
            image::Rgb([r16(p[0]), r16(p[1]), r16(p[2])])
        }),
        other => other.to_rgb8(),
    }
}

/// Loads a reference / distorted pair; refuses pairs whose sizes differ.
pub fn load_pair(ref_path: &Path, dist_path: &Path) -> anyhow::Result<(RgbImage, RgbImage)> {
    let r = load_rgb(ref_path)?;
    let d = load_rgb(dist_path)?;
    check_same_size(&r, ref_path, &d, dist_path)?;
    Ok((r, d))
}

/// Error when a reference and a distorted image differ in size; the paths name them.
pub fn check_same_size(
    r: &RgbImage,
    ref_path: &Path,
    d: &RgbImage,
    dist_path: &Path,
) -> anyhow::Result<()> {
    if r.dimensions() != d.dimensions() {
        bail!(
            "size mismatch: reference {} is {}x{} but distorted {} is {}x{}",
            ref_path.display(),
            r.width(),
            r.height(),
            dist_path.display(),
            d.width(),
            d.height()
        );
    }
    Ok(())
}

/// Error when `img` is smaller than `min` x `min` (the model's crop size, 288).
pub fn check_min_size(img: &RgbImage, path: &Path, min: u32) -> anyhow::Result<()> {
    let (w, h) = img.dimensions();
    if w < min || h < min {
        bail!(
            "{}: image is {w}x{h}, smaller than the required {min}x{min}",
            path.display()
        );
    }
    Ok(())
}

/// Element type of the samples of a raw pixel buffer (see [`rgb_from_samples`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleType {
    U8,
    U16,
    F16,
    F32,
    F64,
}

impl SampleType {
    /// The type named as numpy names it ("uint8", "float32", ...); the error says which are read.
    pub fn parse(name: &str, what: &str) -> anyhow::Result<SampleType> {
        Ok(match name {
            "uint8" => SampleType::U8,
            "uint16" => SampleType::U16,
            "float16" => SampleType::F16,
            "float32" => SampleType::F32,
            "float64" => SampleType::F64,
            _ => bail!(
                "{what}: unsupported sample type {name}; pass uint8 (0-255), uint16 (0-65535) or float (0-1)"
            ),
        })
    }

    pub fn bytes(self) -> usize {
        match self {
            SampleType::U8 => 1,
            SampleType::U16 | SampleType::F16 => 2,
            SampleType::F32 => 4,
            SampleType::F64 => 8,
        }
    }
}

/// An image from raw interleaved samples in native byte order, rows top to bottom, with shape
/// [h, w] (gray) or [h, w, c] where c is 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA),
/// converted to 8-bit RGB exactly as decoded files are: gray replicated, alpha dropped,
/// 16-bit samples rounded `v / 257`. Float samples are on the 0-1 scale and rounded to
/// `v * 255`; values outside [0, 1] are refused rather than clipped, since they usually mean
/// 0-255 data in a float array. `what` names the buffer in the one-line errors.
pub fn rgb_from_samples(
    bytes: &[u8],
    shape: &[usize],
    sample: SampleType,
    what: &str,
) -> anyhow::Result<RgbImage> {
    let shape_text = || {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        }
    };
    let (h, w, c) = match *shape {
        [h, w] => (h, w, 1),
        [h, w, c] if (1..=4).contains(&c) => (h, w, c),
        [c, _, _] if (1..=4).contains(&c) => bail!(
            "{what}: expected height x width x channels (HxWx3 RGB, HxWx4 RGBA or HxW gray), got shape {} with channels first",
            shape_text()
        ),
        _ => bail!(
            "{what}: expected an HxWx3 RGB, HxWx4 RGBA or HxW gray image, got shape {}",
            shape_text()
        ),
    };
    if h == 0 || w == 0 {
        bail!("{what}: image has zero size ({w}x{h})");
    }
    if w > MAX_SIDE as usize || h > MAX_SIDE as usize || (w as u64) * (h as u64) > MAX_PIXELS {
        bail!("{what}: image is {w}x{h} pixels, over the limit of {MAX_SIDE}x{MAX_SIDE} and {MAX_PIXELS} pixels");
    }
    let count = h * w * c;
    if bytes.len() != count * sample.bytes() {
        bail!(
            "{what}: {} bytes do not hold {w}x{h}x{c} samples of {:?}",
            bytes.len(),
            sample
        );
    }
    let (w32, h32) = (w as u32, h as u32);
    let img = match sample {
        SampleType::U16 => {
            let v: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .collect();
            match c {
                1 => DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
                2 => DynamicImage::ImageLumaA16(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
                3 => DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
                _ => DynamicImage::ImageRgba16(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
            }
        }
        _ => {
            let v: Vec<u8> = match sample {
                SampleType::U8 => bytes.to_vec(),
                _ => unit_floats_to_u8(bytes, sample, what)?,
            };
            match c {
                1 => DynamicImage::ImageLuma8(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
                2 => DynamicImage::ImageLumaA8(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
                3 => DynamicImage::ImageRgb8(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
                _ => DynamicImage::ImageRgba8(image::ImageBuffer::from_raw(w32, h32, v).unwrap()),
            }
        }
    };
    Ok(to_rgb8(img))
}

/// Float samples on the 0-1 scale to 8-bit (round(v * 255)); refuses non-finite values and
/// values outside [0, 1]. Two passes over the bytes, so no wide copy of a large image is made.
fn unit_floats_to_u8(bytes: &[u8], sample: SampleType, what: &str) -> anyhow::Result<Vec<u8>> {
    let values = || -> Box<dyn Iterator<Item = f64> + '_> {
        match sample {
            SampleType::F16 => Box::new(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f64()),
            ),
            SampleType::F32 => Box::new(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64),
            ),
            SampleType::F64 => Box::new(
                bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_ne_bytes(b.try_into().expect("8-byte chunk"))),
            ),
            SampleType::U8 | SampleType::U16 => unreachable!("integer samples are not floats"),
        }
    };
    let (mut lo, mut hi, mut finite) = (f64::INFINITY, f64::NEG_INFINITY, true);
    for v in values() {
        finite &= v.is_finite();
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !finite {
        bail!("{what}: holds NaN or infinite values");
    }
    if lo < 0.0 || hi > 1.0 {
        bail!(
            "{what}: float values must lie in [0, 1], found {lo}..{hi} (pass 0-255 data as uint8)"
        );
    }
    Ok(values().map(|v| (v * 255.0).round() as u8).collect())
}
