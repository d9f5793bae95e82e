//! `asna._asna`: the native half of the Python package. A thin layer over the asna crate: it
//! turns what the Python half hands over (paths, or raw samples with their shape and numpy type)
//! into the library's images, runs the library's `asna::Model` on a worker thread that owns the GPU,
//! and turns the library's one-line errors into Python exceptions.
//!
//! The GPU context is single-threaded (`Rc`, `RefCell`), so each model lives on its own worker
//! thread; Python calls send it requests and wait for the answer with the GIL released, so
//! other Python threads run meanwhile and any number of them may share one model.
//!
//! Waits look for Ctrl-C every few milliseconds: a KeyboardInterrupt is raised at once, the
//! GPU work it abandons stops at its next batch, and an image still being decoded is dropped
//! when done. A model belongs to the process that created it: a forked child has no worker
//! thread, so its calls are refused rather than left waiting forever.

use asna::data::{check_min_size, check_same_size, load_rgb, rgb_from_samples, SampleType};
use asna::gpu::{AdapterChoice, Gpu};
use asna::model::asna::SIZE;
use asna::scorer::{check_precision, Precision};
use asna::Model;
use image::RgbImage;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a waiting call looks for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(20);

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
/// name)` in C order and native byte order, or a path. It owns what it refers to, so that it
/// can be decoded on a thread of its own.
#[derive(FromPyObject)]
enum Input {
    Samples(String, PyBackedBytes, Vec<usize>, String),
    Path(PathBuf),
}

/// Bytes an input holds once decoded: an array's own size (its samples, already in memory),
/// or a file's estimate from its header.
fn input_bytes(input: &Input) -> usize {
    match input {
        Input::Path(p) => asna::data::background::decoded_bytes(p),
        Input::Samples(_, bytes, _, _) => bytes.len(),
    }
}

/// The image and the name its errors use (the path, or the name given to an array).
fn load(input: &Input) -> Result<(RgbImage, PathBuf), Failure> {
    match input {
        Input::Path(p) => Ok((
            load_rgb(p).map_err(|e| Failure::file(e, p))?,
            p.to_path_buf(),
        )),
        Input::Samples(name, bytes, shape, dtype) => {
            let img = SampleType::parse(dtype, name)
                .and_then(|t| rgb_from_samples(bytes, shape, t, name))
                .map_err(Failure::value)?;
            Ok((img, PathBuf::from(name)))
        }
    }
}

/// A pair checked as `asna score` checks it: same size, at least 288x288, in that order.
fn load_pair(r: &Input, d: &Input) -> Result<(RgbImage, RgbImage), Failure> {
    let (ri, rn) = load(r)?;
    let (di, dn) = load(d)?;
    check_same_size(&ri, &rn, &di, &dn).map_err(Failure::value)?;
    check_min_size(&ri, &rn, SIZE as u32).map_err(Failure::value)?;
    Ok((ri, di))
}

type Reply<T> = mpsc::Sender<Result<T, Failure>>;

/// Work for the GPU thread, with the flag that abandons it.
enum Request {
    Score(Vec<(RgbImage, RgbImage)>, Arc<AtomicBool>, Reply<Vec<f64>>),
    Map(RgbImage, RgbImage, Arc<AtomicBool>, Reply<Vec<f32>>),
}

/// A request sent to the GPU thread, not yet answered.
struct Pending<T> {
    reply: mpsc::Receiver<Result<T, Failure>>,
    stop: Arc<AtomicBool>,
}

impl<T: Send> Pending<T> {
    /// Its answer; a Ctrl-C meanwhile abandons the request, whose GPU work then stops at its
    /// next batch.
    fn wait(self, py: Python<'_>) -> PyResult<T> {
        let answer = wait(py, self.reply);
        if answer.is_err() {
            self.stop.store(true, Ordering::Relaxed);
        }
        answer
    }
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

/// Runs `f` with the GPU stopping once `stop` is set, turning its error or panic into a
/// RuntimeError, so that the worker lives on.
fn guarded_until<T>(
    gpu: &Gpu,
    stop: &Arc<AtomicBool>,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> Result<T, Failure> {
    if stop.load(Ordering::Relaxed) {
        return Err(Failure::Runtime("the request was abandoned".into()));
    }
    gpu.stop_when(Some(stop.clone()));
    let result = guarded(f);
    gpu.stop_when(None);
    result
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
    // The device is released before the failure is reported: the caller may end the process
    // as soon as it hears, and a driver torn down by the exit while this thread still
    // releases its device crashes.
    let fail = |gpu: std::rc::Rc<Gpu>, failure: Failure| {
        drop(gpu);
        drop(ready.send(Err(failure)));
    };
    let dtype = settings.precision.dtype();
    if let Err(e) = check_precision(&gpu, dtype) {
        return fail(gpu, Failure::value(e));
    }
    let mut builder = Model::builder()
        .precision(settings.precision)
        .tta(settings.tta)
        .batch(settings.batch);
    for w in &settings.weights {
        builder = builder.weights(w);
    }
    let model = match builder.build_on(gpu.clone()) {
        Ok(m) => m,
        Err(e) => {
            // The first weights path that does not exist makes it a FileNotFoundError.
            let missing = settings.weights.iter().find(|p| !p.exists());
            let failure = match missing {
                Some(p) => Failure::file(e, p),
                None => Failure::Io(asna::one_line(&e)),
            };
            return fail(gpu, failure);
        }
    };
    let report = Ready {
        adapter: model.adapter(),
        batch: model.batch(),
        sources: model.sources(),
    };
    if ready.send(Ok(report)).is_err() {
        return;
    }
    for request in requests {
        // A caller that stopped waiting (an interrupted thread) is not an error here.
        match request {
            Request::Score(pairs, stop, reply) => {
                let scores = guarded_until(&gpu, &stop, || model.score_batch(&pairs));
                let _ = reply.send(scores);
            }
            Request::Map(r, d, stop, reply) => {
                let map = guarded_until(&gpu, &stop, || Ok(model.quality_map(&r, &d)?.values));
                let _ = reply.send(map);
            }
        }
    }
}

/// Waits for a reply with the GIL released, raising KeyboardInterrupt (or whatever a signal
/// handler raises) as soon as Ctrl-C arrives.
fn wait<T: Send>(py: Python<'_>, rx: mpsc::Receiver<Result<T, Failure>>) -> PyResult<T> {
    let mut rx = rx;
    loop {
        // The receiver travels into the closure and back: it cannot be shared across threads.
        let (back, answer) = py.detach(move || {
            let answer = rx.recv_timeout(SIGNAL_CHECK);
            (rx, answer)
        });
        rx = back;
        match answer {
            Ok(answer) => return Ok(answer?),
            Err(RecvTimeoutError::Disconnected) => return Err(Failure::stopped().into()),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
        }
    }
}

/// Starts `work` (decoding, converting) on a thread of its own, to be waited for with
/// `wait`: a Ctrl-C meanwhile returns at once, and the result is dropped when the work ends.
fn start<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> PyResult<mpsc::Receiver<Result<T, Failure>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("asna-decode".into())
        .spawn(move || drop(tx.send(work())))
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a decoding thread: {e}")))?;
    Ok(rx)
}

fn forked_child_error() -> PyErr {
    PyRuntimeError::new_err(
        "asna: a Model cannot be used in a forked child process; create it in the child \
         or use the 'spawn' start method of multiprocessing",
    )
}

/// The model on its GPU worker thread. Python code uses `asna.Model`, which wraps this.
#[pyclass(frozen, module = "asna._asna")]
struct NativeModel {
    requests: Option<mpsc::Sender<Request>>,
    worker: Option<JoinHandle<()>>,
    /// The process whose thread `worker` is: a forked child has a copy of this object but
    /// not the thread.
    pid: u32,
    #[pyo3(get)]
    adapter: String,
    #[pyo3(get)]
    batch: usize,
    #[pyo3(get)]
    weights: Vec<String>,
}

impl NativeModel {
    fn check_process(&self) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(forked_child_error());
        }
        Ok(())
    }

    fn submit<T>(
        &self,
        request: impl FnOnce(Arc<AtomicBool>, Reply<T>) -> Request,
    ) -> Result<Pending<T>, Failure> {
        let (tx, reply) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        self.requests
            .as_ref()
            .ok_or_else(Failure::stopped)?
            .send(request(stop.clone(), tx))
            .map_err(|_| Failure::stopped())?;
        Ok(Pending { reply, stop })
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
            pid: std::process::id(),
            adapter: ready.adapter,
            batch: ready.batch,
            weights: ready.sources,
        })
    }

    /// Scores an iterable of (reference, distorted) inputs in chunks of four GPU batches, or
    /// fewer when their decoded pixels would pass half of asna's decoding budget (at least one
    /// pair), as `asna score --pairs` does; the next chunk is converted while the GPU scores
    /// this one.
    fn score_pairs(&self, py: Python<'_>, pairs: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
        self.check_process()?;
        let chunk = self.batch * 4;
        let mut items = pairs.try_iter()?;
        let mut scores = Vec::new();
        let mut pending: Option<Pending<Vec<f64>>> = None;
        loop {
            let mut inputs: Vec<(Input, Input)> = Vec::with_capacity(chunk);
            let mut bytes = 0usize;
            while inputs.len() < chunk && bytes < asna::data::DECODE_BUDGET_BYTES / 2 {
                let Some(item) = items.next() else { break };
                match item.and_then(|i| i.extract::<(Input, Input)>()) {
                    Ok(pair) => {
                        bytes = bytes
                            .saturating_add(input_bytes(&pair.0))
                            .saturating_add(input_bytes(&pair.1));
                        inputs.push(pair)
                    }
                    Err(e) => {
                        // Python code raised (a Ctrl-C among them): the GPU stops too.
                        if let Some(p) = pending.take() {
                            p.stop.store(true, Ordering::Relaxed);
                        }
                        return Err(e);
                    }
                }
            }
            let images = start(move || inputs.iter().map(|(r, d)| load_pair(r, d)).collect());
            // This chunk decodes while the GPU scores the one before.
            if let Some(p) = pending.take() {
                scores.extend(p.wait(py)?);
            }
            let images: Vec<(RgbImage, RgbImage)> = wait(py, images?)?;
            if images.is_empty() {
                return Ok(scores);
            }
            pending = Some(self.submit(|stop, reply| Request::Score(images, stop, reply))?);
        }
    }

    /// The degradation map of one pair as (float32 bytes, height, width).
    fn quality_map(
        &self,
        py: Python<'_>,
        reference: Input,
        distorted: Input,
    ) -> PyResult<(Py<PyBytes>, usize, usize)> {
        self.check_process()?;
        let (r, d) = wait(py, start(move || load_pair(&reference, &distorted))?)?;
        let (w, h) = (r.width() as usize, r.height() as usize);
        let map = self
            .submit(|stop, reply| Request::Map(r, d, stop, reply))?
            .wait(py)?;
        let bytes: Vec<u8> = map.iter().flat_map(|v| v.to_ne_bytes()).collect();
        Ok((PyBytes::new(py, &bytes).unbind(), h, w))
    }
}

impl Drop for NativeModel {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child's copy: the thread is not in this process, and the channel may
            // have been copied mid-operation, so neither is touched.
            std::mem::forget(self.requests.take());
            std::mem::forget(self.worker.take());
            return;
        }
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
    let (img, _) = wait(py, start(move || load(&image))?)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((PyBytes::new(py, img.as_raw()).unbind(), h, w))
}

/// Every adapter as JSON (name, backend, type, driver, limits, features), as `asna devices
/// --json` prints it; an empty list when there is none.
#[pyfunction]
fn devices_json(py: Python<'_>) -> PyResult<String> {
    let rows = py.detach(|| {
        guarded(|| {
            let adapters = asna::gpu::context::try_enumerate()?;
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
