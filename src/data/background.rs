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

/// What job `k` will hold in memory while it is built and until it is delivered, in bytes
/// (known before it runs: for images, from their headers).
type Cost = dyn Fn(usize) -> usize + Send + Sync;

/// Bytes of decoded images that scoring, evaluation and training may hold: half for the
/// pairs decoded ahead of the GPU, half for the chunk being scored. One pair larger than
/// either half still goes through, alone.
pub const DECODE_BUDGET_BYTES: usize = 512 << 20;

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
    /// Cost of the jobs being built or waiting for the consumer.
    in_flight: usize,
    /// Next index to reserve its cost: jobs reserve in order, so a job waiting for the budget
    /// waits only for lower ones, which the consumer takes first.
    next_reserve: usize,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    stop: AtomicBool,
}

/// Iterator over the results of `job(k)` for `k` in a range, in order, built on background
/// threads.
///
/// At most `ahead` results are being built or waiting past the one the consumer asks for, and
/// (with [`InOrder::with_budget`]) at most `budget` bytes of them, except that the one the
/// consumer waits for is always built. The first error is returned in order and ends the
/// iteration. Dropping the iterator sets the stop flag and joins the workers (each finishes at
/// most its current job).
pub struct InOrder<T> {
    job: Arc<Job<T>>,
    names: Names,
    shared: Arc<Shared>,
    rx: Option<Receiver<(usize, Result<T>, usize)>>,
    threads: Vec<JoinHandle<()>>,
    pending: BTreeMap<usize, (Result<T>, usize)>,
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
        Self::with_budget(names, range, workers, ahead, (usize::MAX, |_| 0), job)
    }

    /// `new`, with the results in flight bounded by `budget` = (bytes, cost of job k).
    pub fn with_budget(
        names: Names,
        range: Range<usize>,
        workers: usize,
        ahead: usize,
        budget: (usize, impl Fn(usize) -> usize + Send + Sync + 'static),
        job: impl Fn(usize, &AtomicBool) -> Result<T> + Send + Sync + 'static,
    ) -> Self {
        let (next, end) = (range.start.min(range.end), range.end);
        let job: Arc<Job<T>> = Arc::new(job);
        let (bytes, cost) = budget;
        let cost: Arc<Cost> = Arc::new(cost);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_job: next,
                delivered: next,
                in_flight: 0,
                next_reserve: next,
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
                let (job, cost, shared, tx) =
                    (job.clone(), cost.clone(), shared.clone(), tx.clone());
                let limits = Limits {
                    end,
                    ahead: cap,
                    bytes,
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("asna-{}-{w}", names.thread))
                    .spawn(move || worker(&*job, &*cost, names, &shared, tx, limits));
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

/// A worker's bounds: the end of the range, how many jobs past the consumer, and bytes.
#[derive(Clone, Copy)]
struct Limits {
    end: usize,
    ahead: usize,
    bytes: usize,
}

fn worker<T>(
    job: &Job<T>,
    cost: &Cost,
    names: Names,
    shared: &Shared,
    tx: Sender<(usize, Result<T>, usize)>,
    limits: Limits,
) {
    let wait = |st| shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
    loop {
        let k = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if shared.stop.load(Ordering::SeqCst) || st.next_job >= limits.end {
                    return;
                }
                if st.next_job < st.delivered + limits.ahead {
                    break;
                }
                st = wait(st);
            }
            st.next_job += 1;
            st.next_job - 1
        };
        // The job's cost is learnt outside the lock (it may read file headers), then reserved
        // in index order: it waits for its turn, then while the jobs before it hold the budget
        // (one job alone always runs).
        let bytes = cost(k);
        {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while !shared.stop.load(Ordering::SeqCst)
                && (st.next_reserve != k
                    || (st.in_flight > 0 && st.in_flight.saturating_add(bytes) > limits.bytes))
            {
                st = wait(st);
            }
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            st.in_flight = st.in_flight.saturating_add(bytes);
            st.next_reserve += 1;
            shared.cv.notify_all();
        }
        let res = run_guarded(job, names, k, &shared.stop);
        let failed = res.is_err();
        if tx.send((k, res, bytes)).is_err() || failed {
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
        let (res, bytes) = match &self.rx {
            None => (run_guarded(&*self.job, self.names, k, &self.shared.stop), 0),
            Some(rx) => loop {
                if let Some(r) = self.pending.remove(&k) {
                    break r;
                }
                match rx.recv() {
                    Ok((j, r, bytes)) => {
                        self.pending.insert(j, (r, bytes));
                    }
                    Err(_) => {
                        break (
                            Err(anyhow!(
                                "{}: worker threads ended before {} {k}",
                                self.names.what,
                                self.names.item
                            )),
                            0,
                        )
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
            // Delivered: its bytes are the consumer's to count now.
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.delivered = self.next;
            st.in_flight = st.in_flight.saturating_sub(bytes);
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

/// Bytes an image file will hold while it is decoded, from its header alone: 8 per pixel
/// (the widest form a decoder produces, 16-bit RGBA, before the conversion to 8-bit RGB); 0
/// when the header cannot be read (the decoding then says why).
pub fn decoded_bytes(path: &std::path::Path) -> usize {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map_or(0, |(w, h)| w as usize * h as usize * 8)
}

/// The next chunk of decoded pairs for the GPU: up to `max_pairs`, and no more once they hold
/// half of [`DECODE_BUDGET_BYTES`] (at least one pair); empty at the end.
pub fn next_chunk(
    decoded: &mut InOrder<(RgbImage, RgbImage)>,
    max_pairs: usize,
) -> Result<Vec<(RgbImage, RgbImage)>> {
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    while chunk.len() < max_pairs.max(1) && bytes < DECODE_BUDGET_BYTES / 2 {
        match decoded.next() {
            Some(pair) => {
                let pair = pair?;
                bytes += held_bytes(&pair);
                chunk.push(pair);
            }
            None => break,
        }
    }
    Ok(chunk)
}

/// Decoded bytes of a pair as [`decoded_bytes`] estimates them.
pub fn pair_bytes(pair: &(PathBuf, PathBuf)) -> usize {
    decoded_bytes(&pair.0).saturating_add(decoded_bytes(&pair.1))
}

/// The bytes of decoded pairs, as held in memory (8-bit RGB).
pub fn held_bytes(pair: &(RgbImage, RgbImage)) -> usize {
    pair.0.as_raw().len() + pair.1.as_raw().len()
}

/// Decodes `pairs` (reference, distorted) on background threads, in order, with at most
/// `ahead` pairs and half of [`DECODE_BUDGET_BYTES`] decoded ahead of the consumer; each pair
/// as [`load_pair_at_least`] loads it.
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
    let pairs = Arc::new(pairs);
    let costs = pairs.clone();
    InOrder::with_budget(
        names,
        0..pairs.len(),
        workers,
        ahead,
        (DECODE_BUDGET_BYTES / 2, move |k| pair_bytes(&costs[k])),
        move |k, _stop| {
            let (r, d) = &pairs[k];
            load_pair_at_least(r, d, min_side)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// An item that counts itself in `live` (bytes) from when its job starts until the
    /// consumer drops it.
    struct Held {
        k: usize,
        bytes: usize,
        live: Arc<AtomicUsize>,
    }

    impl Drop for Held {
        fn drop(&mut self) {
            self.live.fetch_sub(self.bytes, Ordering::SeqCst);
        }
    }

    const NAMES: Names = Names {
        what: "test",
        item: "item",
        thread: "test",
    };

    /// Runs `costs.len()` jobs on 4 workers, up to 16 ahead, under `budget`; returns the
    /// order delivered and the most bytes ever live (in flight plus the consumer's item).
    fn run(costs: Vec<usize>, budget: usize) -> (Vec<usize>, usize) {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (l, p, c) = (live.clone(), peak.clone(), Arc::new(costs.clone()));
        let c2 = c.clone();
        let items = InOrder::with_budget(
            NAMES,
            0..costs.len(),
            4,
            16,
            (budget, move |k| c2[k]),
            move |k, _| {
                let now = l.fetch_add(c[k], Ordering::SeqCst) + c[k];
                p.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                Ok(Held {
                    k,
                    bytes: c[k],
                    live: l.clone(),
                })
            },
        );
        let mut order = Vec::new();
        for item in items {
            let item = item.unwrap();
            // A slow consumer: the workers would run far ahead if nothing held them.
            std::thread::sleep(Duration::from_millis(5));
            order.push(item.k);
        }
        (order, peak.load(Ordering::SeqCst))
    }

    #[test]
    fn the_byte_budget_bounds_the_items_in_flight() {
        let costs: Vec<usize> = (0..40).map(|k| 10 + (k * 37) % 91).collect();
        let largest = *costs.iter().max().unwrap();
        let (order, peak) = run(costs.clone(), 150);
        assert_eq!(order, (0..40).collect::<Vec<_>>(), "every item, in order");
        assert!(
            peak <= 150 + largest,
            "{peak} bytes live under a budget of 150"
        );
        // Without a budget the same jobs run 16 ahead.
        let (_, unbounded) = run(costs, usize::MAX);
        assert!(
            unbounded > 150 + largest,
            "{unbounded}: the test holds no budget to account"
        );
    }

    #[test]
    fn an_item_larger_than_the_budget_still_goes_through_alone() {
        let (order, peak) = run(vec![10, 1000, 10, 10, 2000, 10], 100);
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
        // 2000 alone, with at most the consumer's previous item beside it.
        assert!(peak <= 2000 + 10, "{peak}");
    }
}
