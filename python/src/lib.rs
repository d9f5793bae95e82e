//! `asna._asna`: the native half of the Python package. A thin layer over the asna crate: it
//! turns what the Python half hands over (paths, or raw samples with their shape and numpy type)
//! into the library's images, runs the library's scorer on a worker thread that owns the GPU,
//! and turns the library's one-line errors into Python exceptions.
//!
//! The GPU context is single-threaded (`Rc`, `RefCell`), so each model lives on its own worker
//! thread; Python calls send it requests and wait for the answer with the GIL released, so
//! other Python threads run meanwhile and any number of them may share one model.

use asna::data::{check_min_size, check_same_size, load_rgb, rgb_from_samples, SampleType};
use asna::gpu::{AdapterChoice, Gpu};
use asna::model::asna::SIZE;
use asna::model::checkpoint::load_models;
use asna::scorer::{check_precision, Precision, Scorer};
use image::RgbImage;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// A failure, by the Python exception it becomes; the message is the command line's.
enum Failure {
    /// FileNotFoundError
    NotFound(String),
    /// OSError: a file that exists but cannot be read or decoded
    Io(String),
    /// ValueError: an input or argument the model cannot take
    Value(String),
    /// RuntimeError: no adapter, a GPU failure, a worker that stopped
    Runtime(String),
}

impl Failure {
    fn value(e: anyhow::Error) -> Failure {
        Failure::Value(asna::one_line(&e))
    }

    fn runtime(e: anyhow::Error) -> Failure {
        Failure::Runtime(asna::one_line(&e))
    }

    /// A file that could not be used: FileNotFoundError when `path` does not exist, else OSError.
    fn file(e: anyhow::Error, path: &Path) -> Failure {
        let message = asna::one_line(&e);
        match std::fs::metadata(path) {
            Err(io) if io.kind() == std::io::ErrorKind::NotFound => Failure::NotFound(message),
            _ => Failure::Io(message),
        }
    }

    fn stopped() -> Failure {
        Failure::Runtime("asna's GPU worker thread stopped unexpectedly".into())
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::NotFound(m) => PyFileNotFoundError::new_err(m),
            Failure::Io(m) => PyOSError::new_err(m),
            Failure::Value(m) => PyValueError::new_err(m),
            Failure::Runtime(m) => PyRuntimeError::new_err(m),
        }
    }
}

/// One image as the Python half hands it over: raw samples `(name, bytes, shape, numpy type
/// name)` in C order and native byte order, or a path.
#[derive(FromPyObject)]
enum Input {
    Samples(String, Py<PyBytes>, Vec<usize>, String),
    Path(PathBuf),
}

/// An `Input` borrowed so that it can be converted with the GIL released.
enum Source<'a> {
    Samples {
        name: &'a str,
        bytes: &'a [u8],
        shape: &'a [usize],
        dtype: &'a str,
    },
    Path(&'a Path),
}

impl Input {
    fn source<'a>(&'a self, py: Python<'a>) -> Source<'a> {
        match self {
            Input::Samples(name, bytes, shape, dtype) => Source::Samples {
                name,
                bytes: bytes.bind(py).as_bytes(),
                shape,
                dtype,
            },
            Input::Path(p) => Source::Path(p),
        }
    }
}

/// The image and the name its errors use (the path, or the name given to an array).
fn load(source: &Source) -> Result<(RgbImage, PathBuf), Failure> {
    match source {
        Source::Path(p) => Ok((
            load_rgb(p).map_err(|e| Failure::file(e, p))?,
            p.to_path_buf(),
        )),
        Source::Samples {
            name,
            bytes,
            shape,
            dtype,
        } => {
            let img = SampleType::parse(dtype, name)
                .and_then(|t| rgb_from_samples(bytes, shape, t, name))
                .map_err(Failure::value)?;
            Ok((img, PathBuf::from(name)))
        }
    }
}

/// A pair checked as `asna score` checks it: same size, at least 288x288, in that order.
fn load_pair(r: &Source, d: &Source) -> Result<(RgbImage, RgbImage), Failure> {
    let (ri, rn) = load(r)?;
    let (di, dn) = load(d)?;
    check_same_size(&ri, &rn, &di, &dn).map_err(Failure::value)?;
    check_min_size(&ri, &rn, SIZE as u32).map_err(Failure::value)?;
    Ok((ri, di))
}

type Reply<T> = mpsc::Sender<Result<T, Failure>>;

enum Request {
    Score(Vec<(RgbImage, RgbImage)>, Reply<Vec<f64>>),
    Map(RgbImage, RgbImage, Reply<Vec<f32>>),
}

struct Settings {
    weights: Vec<PathBuf>,
    adapter: Option<String>,
    precision: Precision,
    tta: bool,
    batch: usize,
}

/// What the worker reports once its GPU and models are ready.
struct Ready {
    adapter: String,
    batch: usize,
    sources: Vec<String>,
}

/// Runs `f`, turning its error or panic into a RuntimeError, so that the worker lives on.
fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, Failure> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Failure::runtime),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Failure::Runtime(format!("internal error in asna: {what}")))
        }
    }
}

/// Opens the GPU and loads the models in the order `asna score` does (adapter, precision,
/// weights), then serves requests until the model is dropped.
fn worker(settings: Settings, ready: Reply<Ready>, requests: mpsc::Receiver<Request>) {
    let gpu = match Gpu::new(&AdapterChoice::from_arg(settings.adapter.as_deref())) {
        Ok(g) => g,
        Err(e) => return drop(ready.send(Err(Failure::runtime(e)))),
    };
    let dtype = settings.precision.dtype();
    if let Err(e) = check_precision(&gpu, dtype) {
        return drop(ready.send(Err(Failure::value(e))));
    }
    let models = match load_models(&gpu, &settings.weights) {
        Ok(m) => m,
        Err(e) => {
            // The first weights path that does not exist makes it a FileNotFoundError.
            let missing = settings.weights.iter().find(|p| !p.exists());
            let failure = match missing {
                Some(p) => Failure::file(e, p),
                None => Failure::Io(asna::one_line(&e)),
            };
            return drop(ready.send(Err(failure)));
        }
    };
    let sources = models.iter().map(|m| m.source.clone()).collect();
    let scorer = match Scorer::new(&gpu, models, settings.batch, settings.tta).with_precision(dtype)
    {
        Ok(s) => s,
        Err(e) => return drop(ready.send(Err(Failure::runtime(e)))),
    };
    let report = Ready {
        adapter: gpu.describe(),
        batch: scorer.batch,
        sources,
    };
    if ready.send(Ok(report)).is_err() {
        return;
    }
    for request in requests {
        // A caller that stopped waiting (an interrupted thread) is not an error here.
        match request {
            Request::Score(pairs, reply) => {
                let _ = reply.send(guarded(|| scorer.score_pairs(&pairs, |_| {})));
            }
            Request::Map(r, d, reply) => {
                let _ = reply.send(guarded(|| scorer.degradation_map(&r, &d)));
            }
        }
    }
}

/// Waits for a reply with the GIL released.
fn wait<T: Send>(py: Python<'_>, rx: mpsc::Receiver<Result<T, Failure>>) -> PyResult<T> {
    Ok(py.detach(move || rx.recv().unwrap_or_else(|_| Err(Failure::stopped())))?)
}

/// The model on its GPU worker thread. Python code uses `asna.Model`, which wraps this.
#[pyclass(frozen, module = "asna._asna")]
struct NativeModel {
    requests: Option<mpsc::Sender<Request>>,
    worker: Option<JoinHandle<()>>,
    #[pyo3(get)]
    adapter: String,
    #[pyo3(get)]
    batch: usize,
    #[pyo3(get)]
    weights: Vec<String>,
}

impl NativeModel {
    fn send(&self, request: Request) -> Result<(), Failure> {
        self.requests
            .as_ref()
            .ok_or_else(Failure::stopped)?
            .send(request)
            .map_err(|_| Failure::stopped())
    }

    fn submit_scores(
        &self,
        pairs: Vec<(RgbImage, RgbImage)>,
    ) -> Result<mpsc::Receiver<Result<Vec<f64>, Failure>>, Failure> {
        let (tx, rx) = mpsc::channel();
        self.send(Request::Score(pairs, tx))?;
        Ok(rx)
    }
}

#[pymethods]
impl NativeModel {
    #[new]
    fn new(
        py: Python<'_>,
        weights: Vec<PathBuf>,
        adapter: Option<String>,
        precision: &str,
        tta: bool,
        batch: usize,
    ) -> PyResult<Self> {
        let precision = match precision {
            "f32" => Precision::F32,
            "f16" => Precision::F16,
            other => {
                return Err(PyValueError::new_err(format!(
                    "precision must be \"f32\" or \"f16\", not \"{other}\""
                )))
            }
        };
        let settings = Settings {
            weights,
            adapter,
            precision,
            tta,
            batch,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (requests, requests_rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("asna-gpu".into())
            .spawn(move || worker(settings, ready_tx, requests_rx))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start asna's GPU thread: {e}")))?;
        let ready = wait(py, ready_rx)?;
        Ok(NativeModel {
            requests: Some(requests),
            worker: Some(worker),
            adapter: ready.adapter,
            batch: ready.batch,
            weights: ready.sources,
        })
    }

    /// Scores an iterable of (reference, distorted) inputs in chunks of four GPU batches, as
    /// `asna score --pairs` does; the next chunk is converted while the GPU scores this one.
    fn score_pairs(&self, py: Python<'_>, pairs: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
        let chunk = self.batch * 4;
        let mut items = pairs.try_iter()?;
        let mut scores = Vec::new();
        let mut pending = None;
        loop {
            let mut inputs: Vec<(Input, Input)> = Vec::with_capacity(chunk);
            for item in items.by_ref().take(chunk) {
                inputs.push(item?.extract()?);
            }
            let sources: Vec<(Source, Source)> = inputs
                .iter()
                .map(|(r, d)| (r.source(py), d.source(py)))
                .collect();
            let images = py.detach(|| {
                sources
                    .iter()
                    .map(|(r, d)| load_pair(r, d))
                    .collect::<Result<Vec<_>, Failure>>()
            });
            if let Some(rx) = pending.take() {
                scores.extend(wait(py, rx)?);
            }
            // Ctrl-C stops a long list between chunks.
            py.check_signals()?;
            let images = images?;
            if images.is_empty() {
                return Ok(scores);
            }
            pending = Some(self.submit_scores(images)?);
        }
    }

    /// The degradation map of one pair as (float32 bytes, height, width).
    fn quality_map(
        &self,
        py: Python<'_>,
        reference: Input,
        distorted: Input,
    ) -> PyResult<(Py<PyBytes>, usize, usize)> {
        let (r, d) = (reference.source(py), distorted.source(py));
        let (r, d) = py.detach(|| load_pair(&r, &d))?;
        let (w, h) = (r.width() as usize, r.height() as usize);
        let (tx, rx) = mpsc::channel();
        self.send(Request::Map(r, d, tx))?;
        let map = wait(py, rx)?;
        let bytes: Vec<u8> = map.iter().flat_map(|v| v.to_ne_bytes()).collect();
        Ok((PyBytes::new(py, &bytes).unbind(), h, w))
    }
}

impl Drop for NativeModel {
    fn drop(&mut self) {
        // Closing the channel ends the worker, which then releases the GPU.
        self.requests.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// The 8-bit RGB pixels the model scores for one input, as (bytes, height, width).
#[pyfunction]
fn rgb_pixels(py: Python<'_>, image: Input) -> PyResult<(Py<PyBytes>, usize, usize)> {
    let source = image.source(py);
    let (img, _) = py.detach(|| load(&source))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((PyBytes::new(py, img.as_raw()).unbind(), h, w))
}

/// Every adapter as JSON (name, backend, type, driver, limits, features), as `asna devices
/// --json` prints it; an empty list when there is none.
#[pyfunction]
fn devices_json(py: Python<'_>) -> PyResult<String> {
    let rows = py.detach(|| {
        guarded(|| {
            let adapters = asna::gpu::context::enumerate();
            Ok(asna::devices::adapter_rows(&adapters))
        })
    })?;
    serde_json::to_string(&rows).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

#[pymodule]
fn _asna(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_function(wrap_pyfunction!(devices_json, m)?)?;
    m.add_function(wrap_pyfunction!(rgb_pixels, m)?)?;
    m.add("WINDOW", SIZE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
