//! Work on background threads, delivered in order: jobs `0..n` are taken by worker threads as
//! they come free and handed to the consumer by index, so the output is the same whatever the
//! number of workers or the thread timing. The training batch loader ([`super::BatchLoader`])
//! and the decoding of image pairs for scoring and evaluation
//! ([`decode_pairs_in_background`]) both run on it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use image::RgbImage;

use super::image_io::{check_min_size, load_pair};

/// One job: builds item `k`; it may return early with an error once the flag is set (the
/// consumer has stopped).
type Job<T> = dyn Fn(usize, &AtomicBool) -> Result<T> + Send + Sync;

/// How errors and threads are named: errors read "`{what}`: worker panicked while building
/// `{item}` 3", threads are called "asna-`{thread}`-0", "asna-`{thread}`-1", ...
#[derive(Clone, Copy, Debug)]
pub struct Names {
    pub what: &'static str,
    pub item: &'static str,
    pub thread: &'static str,
}

struct State {
    /// Next index a worker will take.
    next_job: usize,
    /// Next index the consumer will receive.
    delivered: usize,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    stop: AtomicBool,
}

/// Iterator over the results of `job(k)` for `k` in a range, in order, built on background
/// threads.
///
/// At most `ahead` results are being built or waiting past the one the consumer asks for. The
/// first error is returned in order and ends the iteration. Dropping the iterator sets the stop
/// flag and joins the workers (each finishes at most its current job).
pub struct InOrder<T> {
    job: Arc<Job<T>>,
    names: Names,
    shared: Arc<Shared>,
    rx: Option<Receiver<(usize, Result<T>)>>,
    threads: Vec<JoinHandle<()>>,
    pending: BTreeMap<usize, Result<T>>,
    next: usize,
    end: usize,
    done: bool,
}

impl<T: Send + 'static> InOrder<T> {
    /// Runs `job` for every index of `range` on `workers` threads; with 0 workers (or when no
    /// thread can be started) each job runs on the calling thread when its result is asked
    /// for, with the same output.
    pub fn new(
        names: Names,
        range: Range<usize>,
        workers: usize,
        ahead: usize,
        job: impl Fn(usize, &AtomicBool) -> Result<T> + Send + Sync + 'static,
    ) -> Self {
        let (next, end) = (range.start.min(range.end), range.end);
        let job: Arc<Job<T>> = Arc::new(job);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_job: next,
                delivered: next,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        let mut rx = None;
        if workers > 0 && next < end {
            let (tx, r) = channel();
            rx = Some(r);
            let cap = ahead.max(1);
            for w in 0..workers {
                let (job, shared, tx) = (job.clone(), shared.clone(), tx.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("asna-{}-{w}", names.thread))
                    .spawn(move || worker(&*job, names, &shared, tx, end, cap));
                match spawned {
                    Ok(h) => threads.push(h),
                    Err(_) => break, // fewer workers; at least the consumer is never left waiting
                }
            }
            if threads.is_empty() {
                rx = None; // no thread could start: run the jobs inline
            }
        }
        InOrder {
            job,
            names,
            shared,
            rx,
            threads,
            pending: BTreeMap::new(),
            next,
            end,
            done: false,
        }
    }
}

impl<T> InOrder<T> {
    fn shutdown(&mut self) {
        {
            let _g = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.cv.notify_all();
        }
        self.rx = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs `job(k)`, turning a panic into an error that names the item.
fn run_guarded<T>(job: &Job<T>, names: Names, k: usize, stop: &AtomicBool) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(|| job(k, stop))) {
        Ok(r) => r,
        Err(_) => Err(anyhow!(
            "{}: worker panicked while building {} {k}",
            names.what,
            names.item
        )),
    }
}

fn worker<T>(
    job: &Job<T>,
    names: Names,
    shared: &Shared,
    tx: Sender<(usize, Result<T>)>,
    end: usize,
    cap: usize,
) {
    loop {
        let k = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if shared.stop.load(Ordering::SeqCst) || st.next_job >= end {
                    return;
                }
                if st.next_job < st.delivered + cap {
                    break;
                }
                st = shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.next_job += 1;
            st.next_job - 1
        };
        let res = run_guarded(job, names, k, &shared.stop);
        let failed = res.is_err();
        if tx.send((k, res)).is_err() || failed {
            return; // consumer gone, or nothing after an error is needed
        }
    }
}

impl<T> Iterator for InOrder<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.end {
            return None;
        }
        let k = self.next;
        let res = match &self.rx {
            None => run_guarded(&*self.job, self.names, k, &self.shared.stop),
            Some(rx) => loop {
                if let Some(r) = self.pending.remove(&k) {
                    break r;
                }
                match rx.recv() {
                    Ok((j, r)) => {
                        self.pending.insert(j, r);
                    }
                    Err(_) => {
                        break Err(anyhow!(
                            "{}: worker threads ended before {} {k}",
                            self.names.what,
                            self.names.item
                        ))
                    }
                }
            },
        };
        self.next += 1;
        if res.is_err() {
            self.done = true;
            self.pending.clear();
            self.shutdown();
        } else {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.delivered = self.next;
            self.shared.cv.notify_all();
        }
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.done { 0 } else { self.end - self.next };
        (0, Some(left))
    }
}

impl<T> Drop for InOrder<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Loads a reference / distorted pair of the same size whose sides are at least `min_side`
/// (the model's crop), with errors naming the file.
pub fn load_pair_at_least(
    ref_path: &std::path::Path,
    dist_path: &std::path::Path,
    min_side: u32,
) -> Result<(RgbImage, RgbImage)> {
    let pair = load_pair(ref_path, dist_path)?;
    check_min_size(&pair.0, ref_path, min_side)?;
    Ok(pair)
}

/// Decodes `pairs` (reference, distorted) on background threads, in order, with at most
/// `ahead` pairs decoded ahead of the consumer; each pair as [`load_pair_at_least`] loads it.
pub fn decode_pairs_in_background(
    pairs: Vec<(PathBuf, PathBuf)>,
    min_side: u32,
    ahead: usize,
) -> InOrder<(RgbImage, RgbImage)> {
    // Decoding is CPU-bound; a few threads keep ahead of the GPU without crowding it out.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let names = Names {
        what: "image decoding",
        item: "pair",
        thread: "decode",
    };
    InOrder::new(names, 0..pairs.len(), workers, ahead, move |k, _stop| {
        let (r, d) = &pairs[k];
        load_pair_at_least(r, d, min_side)
    })
}
