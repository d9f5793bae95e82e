//! The browser page (`asna web`) in a real browser: headless Chromium with its software
//! WebGPU adapter (SwiftShader) scores pairs through `index.html?ref=URL&dist=URL`, and the
//! one console line it logs must agree with the engine within 1e-4 in the model's
//! standardised units; bad input gets its `asna error:` line. The site is served by
//! `asna web --serve`, and the browser and the server are ended by their process ids.
//!
//! Needs Chromium: the Debian package `chromium` (`.ci/run` installs it), or the browser named
//! by `ASNA_CHROMIUM`.

use asna::model::checkpoint::load_model;
use asna::scorer::Scorer;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long one page may take (compiling the shaders and scoring on a CPU adapter).
const PAGE_TIMEOUT: Duration = Duration::from_secs(400);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-web-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("ASNA_CHROMIUM") {
        return p.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the browser test needs Chromium: install the Debian package chromium (.ci/run does) or set ASNA_CHROMIUM"
    );
}

/// A child process ended (by its id) when dropped.
struct Ended(Child);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `asna web --out DIR --serve 127.0.0.1:0`, and the address it serves at.
fn serve(dir: &Path) -> (Ended, String) {
    serve_with(dir, &[])
}

/// `serve` with more arguments for `asna web`.
fn serve_with(dir: &Path, args: &[&str]) -> (Ended, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asna"))
        .args(["web", "--out"])
        .arg(dir)
        .args(["--serve", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("asna web");
    let stdout = child.stdout.take().unwrap();
    let child = Ended(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, url)
}

/// Chromium's flags for WebGPU on its software adapter.
const SWIFTSHADER: &[&str] = &[
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-webgpu-adapter=swiftshader",
];

/// Opens `url` in headless Chromium and returns the page's `asna score:` or `asna error:`
/// console line (the text inside its quotes).
fn page_line(url: &str, profile: &Path) -> String {
    page_line_with(url, profile, SWIFTSHADER)
}

fn page_line_with(url: &str, profile: &Path, webgpu: &[&str]) -> String {
    let mut child = Command::new(chromium())
        .args(["--headless=new", "--no-sandbox"])
        .args(webgpu)
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium");
    let stderr = child.stderr.take().unwrap();
    let _browser = Ended(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("CONSOLE") && line.contains("\"asna ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(PAGE_TIMEOUT)
        .unwrap_or_else(|_| panic!("no asna console line from {url} within {PAGE_TIMEOUT:?}"));
    // Exactly one: nothing else follows shortly after.
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "{url} logged more than one asna line"
    );
    let start = line.find("\"asna ").unwrap() + 1;
    let end = line[start..]
        .find("\", source:")
        .map(|e| start + e)
        .unwrap();
    line[start..end].to_string()
}

fn write_png(path: &Path, img: &image::RgbImage) {
    img.save(path).unwrap();
}

#[test]
fn the_page_scores_as_the_engine_does_in_headless_chromium() {
    let dir = temp_dir("site");
    let (_server, url) = serve(&dir);
    let profile = temp_dir("profile");

    // The pairs: the demo pair (768x512: six overlapping windows), one 288x288 window of it,
    // and bad input.
    let open = |p: &str| image::open(dir.join(p)).unwrap().to_rgb8();
    let (r, d) = (open("demo/ref.png"), open("demo/dist.png"));
    let crop = |img: &image::RgbImage| image::imageops::crop_imm(img, 301, 97, 288, 288).to_image();
    write_png(&dir.join("crop-ref.png"), &crop(&r));
    write_png(&dir.join("crop-dist.png"), &crop(&d));
    write_png(&dir.join("small.png"), &image::RgbImage::new(200, 300));
    std::fs::write(dir.join("notes.txt"), "not an image\n").unwrap();

    let gpu = asna::gpu::Gpu::default_adapter().unwrap();
    let model = load_model(&gpu, None).unwrap();
    let std = model.scaler.std;
    let scorer = Scorer::new(&gpu, vec![model], 16, false);
    let pairs = vec![
        (r, d),
        (crop(&open("demo/ref.png")), crop(&open("demo/dist.png"))),
    ];
    let native = scorer.score_pairs(&pairs, |_| {}).unwrap();

    // The adapter's own plan (the CPU kernels on SwiftShader) on both pairs, and the GPU
    // kernels' plan on the single window.
    for (i, reference, distorted, kernels) in [
        (0, "demo/ref.png", "demo/dist.png", ""),
        (1, "crop-ref.png", "crop-dist.png", ""),
        (1, "crop-ref.png", "crop-dist.png", "&kernels=gpu"),
    ] {
        let line = page_line(
            &format!("{url}index.html?ref={reference}&dist={distorted}{kernels}"),
            &profile,
        );
        let value: f64 = line
            .strip_prefix("asna score: ")
            .unwrap_or_else(|| panic!("{reference}: {line}"))
            .parse()
            .unwrap();
        let digits = line
            .trim_start_matches("asna score: ")
            .replace(['.', '-'], "");
        assert!(
            digits.trim_start_matches('0').len() >= 6,
            "{line}: 6 significant digits"
        );
        let standardised = (value - native[i]).abs() / std;
        assert!(
            standardised <= 1e-4,
            "{reference}{kernels}: browser {value}, engine {}: {standardised:e} standardised units apart",
            native[i]
        );
    }

    for (query, want) in [
        (
            "ref=demo/ref.png&dist=notes.txt",
            "notes.txt is not an image this browser can decode",
        ),
        (
            "ref=demo/ref.png&dist=crop-dist.png",
            "is 768x512 but distorted",
        ),
        (
            "ref=small.png&dist=small.png",
            "images are 200x300, smaller than the model's 288x288 input",
        ),
        (
            "ref=demo/ref.png&dist=missing.png",
            "missing.png: cannot fetch (HTTP 404)",
        ),
        (
            "ref=crop-ref.png&dist=crop-dist.png&kernels=tpu",
            "no plan for tpu kernels",
        ),
    ] {
        let line = page_line(&format!("{url}index.html?{query}"), &profile);
        assert!(
            line.starts_with("asna error: ") && line.contains(want),
            "{query}: {line:?} should say {want:?}"
        );
    }

    // A browser whose WebGPU is switched off.
    let line = page_line_with(
        &format!("{url}index.html?ref=crop-ref.png&dist=crop-dist.png"),
        &profile,
        &["--disable-features=WebGPU"],
    );
    assert!(
        line.starts_with("asna error: this browser has WebGPU but offers no adapter"),
        "{line:?}"
    );
}

/// `path`'s safetensors file with one metadata entry replaced.
fn with_metadata(path: &Path, key: &str, value: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"][key] = value.into();
    let mut text = serde_json::to_vec(&header).unwrap();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// A model whose labels are lower-is-better (a DMOS scale) keeps that direction in the plan
/// the page replays: the browser's score is the engine's for that model, which differs from
/// the same weights read as higher-is-better.
#[test]
fn a_lower_is_better_model_keeps_its_direction_in_the_browser() {
    let dir = temp_dir("site-dmos");
    let weights = dir.with_extension("safetensors");
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/asna-default.safetensors");
    std::fs::write(
        &weights,
        with_metadata(&default, "label_direction", "lower"),
    )
    .unwrap();
    let (_server, url) = serve_with(&dir, &["--weights", weights.to_str().unwrap()]);
    let profile = temp_dir("profile-dmos");

    let open = |p: &str| image::open(dir.join(p)).unwrap().to_rgb8();
    let crop = |img: &image::RgbImage| image::imageops::crop_imm(img, 301, 97, 288, 288).to_image();
    let pair = (crop(&open("demo/ref.png")), crop(&open("demo/dist.png")));
    write_png(&dir.join("crop-ref.png"), &pair.0);
    write_png(&dir.join("crop-dist.png"), &pair.1);

    let gpu = asna::gpu::Gpu::default_adapter().unwrap();
    let engine = |path: &Path| {
        let model = load_model(&gpu, Some(path)).unwrap();
        let std = model.scaler.std;
        let scorer = Scorer::new(&gpu, vec![model], 16, false);
        (
            scorer
                .score_pairs(std::slice::from_ref(&pair), |_| {})
                .unwrap()[0],
            std,
        )
    };
    let (lower, std) = engine(&weights);
    let (higher, _) = engine(&default);
    assert!((lower - higher).abs() > 0.01 * std, "{lower} vs {higher}");

    let line = page_line(
        &format!("{url}index.html?ref=crop-ref.png&dist=crop-dist.png"),
        &profile,
    );
    let value: f64 = line
        .strip_prefix("asna score: ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    assert!(
        (value - lower).abs() / std <= 1e-4,
        "browser {value}, engine {lower} (read as higher-is-better: {higher})"
    );
    let _ = std::fs::remove_file(&weights);
}

#[test]
fn the_site_holds_every_file_the_page_loads() {
    let gpu = asna::gpu::Gpu::default_adapter().unwrap();
    let dir = temp_dir("files");
    asna::web::write_site(&gpu, &dir, None).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    for kind in ["gpu", "cpu"] {
        let name = manifest["plans"][kind].as_str().unwrap();
        let plan = asna::plan::Plan::read(&dir.join(name)).unwrap();
        assert_eq!(plan.kernels, kind);
        plan.read_weights(&dir.join(name)).unwrap();
        for shader in &plan.shaders {
            let text = std::fs::read_to_string(dir.join("shaders").join(shader)).unwrap();
            assert!(asna::ops::all_shaders().contains(&(shader.as_str(), text.as_str())));
        }
    }
    // Nothing is fetched from outside the site: no absolute URLs in the page or its modules.
    for file in ["index.html", "page.js", "asna.js", "bench.html"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for needle in ["http://", "https://", "//cdn", "src=\"//"] {
            assert!(!text.contains(needle), "{file} refers to {needle}");
        }
    }
}

#[test]
fn asna_web_reports_bad_arguments_in_one_line() {
    let dir = temp_dir("bad");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_asna"))
            .arg("web")
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&["--out".as_ref(), file.as_os_str()]);
    assert!(
        err.contains("a-file: exists and is not a directory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let weights = dir.join("nope.safetensors");
    let err = run(&[
        "--out".as_ref(),
        dir.join("site").as_os_str(),
        "--weights".as_ref(),
        weights.as_os_str(),
    ]);
    assert!(err.contains("nope.safetensors"), "{err}");
    assert!(
        !dir.join("site").join("index.html").exists(),
        "no half-written site"
    );
    let err = run(&[
        "--out".as_ref(),
        dir.join("site2").as_os_str(),
        "--serve".as_ref(),
        "256.1.1.1:80".as_ref(),
    ]);
    assert!(err.contains("--serve 256.1.1.1:80: cannot listen"), "{err}");
    // The address is checked before the site is built.
    assert!(
        !dir.join("site2").exists(),
        "a site written for a bad address"
    );
}
