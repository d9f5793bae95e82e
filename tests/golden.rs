//! Parity with the PyTorch float64 oracle: every `asna_golden_s*.safetensors` and
//! `sorter_golden_s*.safetensors` in $ASNA_GOLDEN_DIR (default ../shared/golden) is run and
//! every computed tensor compared within its own tolerance `tol.*`, with the error
//! ||yours - oracle|| / max(||oracle||, 1e-6 sqrt(n)). A directory without golden files fails.

use asna::autograd::Tape;
use asna::gpu::Gpu;
use asna::model::asna::{forward, BnContext, Bound};
use asna::model::params::{to_file, ParamStore};
use asna::model::weights::TensorFile;
use asna::model::{asna as asna_model, loss, sorter};
use asna::optim::Adam;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    std::env::var_os("ASNA_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"))
}

fn golden_files(prefix: &str) -> Vec<PathBuf> {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(prefix)
                && name.ends_with(".safetensors")
                && !name.ends_with("_inputs.safetensors")
                && !name.ends_with("_acts.safetensors")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no {prefix}*.safetensors in {}",
        dir.display()
    );
    files
}

struct Checker {
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    fn check(&mut self, file: &TensorFile, key: &str, got: &[f32]) {
        let (shape, want) = file
            .float(key)
            .unwrap_or_else(|| panic!("golden file lacks {key}"));
        let tol = file
            .float(&format!("tol.{key}"))
            .unwrap_or_else(|| panic!("golden file lacks tol.{key}"))
            .1[0] as f64;
        assert_eq!(
            got.len(),
            want.len(),
            "{key}: {} values, oracle {:?}",
            got.len(),
            shape
        );
        let num: f64 = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
        let err = num / den.max(1e-6 * (want.len() as f64).sqrt());
        self.checked += 1;
        if !(err <= tol) {
            self.failures
                .push(format!("{key}: error {err:.3e} > tolerance {tol:.3e}"));
        }
    }
    fn finish(self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} tensors out of tolerance:\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n")
        );
        eprintln!("{what}: {} tensors within tolerance", self.checked);
    }
}

fn store_from(
    gpu: &Gpu,
    file: &TensorFile,
    specs: &asna::model::params::SpecList,
    prefix: &str,
) -> ParamStore {
    ParamStore::from_file_tensors(
        gpu,
        specs,
        |name| {
            let spec = specs.0.iter().find(|s| s.name == name).unwrap();
            let key = if spec.trainable {
                format!("{prefix}param.{name}")
            } else {
                format!("{prefix}buffer.{name}")
            };
            file.float(&key)
        },
        "golden",
    )
    .expect("golden parameters")
}

fn meta_f32(file: &TensorFile, key: &str) -> f32 {
    file.metadata
        .get(key)
        .unwrap_or_else(|| panic!("metadata {key}"))
        .parse()
        .unwrap()
}

#[test]
fn asna_matches_pytorch_oracle() {
    for path in golden_files("asna_golden_s") {
        let gpu = Gpu::default_adapter().expect("adapter");
        let file = TensorFile::read(&path).unwrap();
        let inputs_path = PathBuf::from(
            path.to_string_lossy()
                .replace(".safetensors", "_inputs.safetensors"),
        );
        let inputs = TensorFile::read(&inputs_path).unwrap();
        let (rshape, ref_px) = inputs.bytes.get("ref").cloned().expect("ref");
        let (_, dist_px) = inputs.bytes.get("dist").cloned().expect("dist");
        let n = rshape[0];
        let (h, w) = (rshape[1], rshape[2]);
        let mut stacked = ref_px.clone();
        stacked.extend_from_slice(&dist_px);

        let specs = asna_model::specs();
        let mut store = store_from(&gpu, &file, &specs, "");
        let sorter_specs = sorter::specs();
        let sorter_store = store_from(&gpu, &file, &sorter_specs, "sorter.");
        let weights = loss::LossWeights {
            mse: meta_f32(&file, "mse_factor"),
            rank: meta_f32(&file, "rank_factor"),
            ..Default::default()
        };
        let (_, target) = file.float("target").unwrap();
        let mut c = Checker {
            failures: vec![],
            checked: 0,
        };

        // Training mode: predictions, loss parts, gradients, running statistics.
        let mut tape = Tape::new(&gpu);
        let params = Bound::new(&mut tape, &store, true);
        let sorter_params = Bound::new(&mut tape, &sorter_store, false);
        let x = tape.leaf(
            asna::ops::image::to_input(&gpu, &stacked, 2 * n, h, w),
            false,
        );
        let target_var = tape.leaf(gpu.upload(&[n], &target), false);
        let mut bn = BnContext::train(&store);
        let pred = forward(&mut tape, &params, &mut bn, &x, None);
        let parts = loss::asna_loss(
            &mut tape,
            &params,
            &pred,
            &target_var,
            Some((&sorter_store, &sorter_params)),
            &weights,
        );
        let updates = std::mem::take(&mut bn.updates);
        drop(bn);
        c.check(&file, "pred.train", &gpu.download(&pred.t).unwrap());
        for (k, v) in [
            ("mse", &parts.mse),
            ("pearson", &parts.pearson),
            ("rank", &parts.rank),
            ("l2", &parts.l2),
            ("total", &parts.total),
        ] {
            c.check(&file, &format!("loss.{k}"), &gpu.download(&v.t).unwrap());
        }
        tape.backward(&parts.total);
        let mut grads = BTreeMap::new();
        for spec in specs.0.iter().filter(|s| s.trainable) {
            let g = tape
                .grad(params.var(&spec.name))
                .unwrap_or_else(|| panic!("no gradient for {}", spec.name))
                .clone();
            c.check(
                &file,
                &format!("grad.{}", spec.name),
                &to_file(spec, &gpu.download(&g).unwrap()),
            );
            grads.insert(spec.name.clone(), g);
        }
        for (name, t) in &updates {
            c.check(&file, &format!("updated.{name}"), &gpu.download(t).unwrap());
        }
        let oracle_updates = file
            .floats
            .keys()
            .filter(|k| k.starts_with("updated."))
            .count();
        assert_eq!(
            [updates.len(), oracle_updates],
            [specs.0.iter().filter(|s| !s.trainable).count(); 2],
            "every running statistic is updated, as in the oracle"
        );
        drop(tape);

        // Evaluation mode with the running statistics before the update.
        let mut tape = Tape::inference(&gpu);
        let params = Bound::new(&mut tape, &store, false);
        let x = tape.leaf(
            asna::ops::image::to_input(&gpu, &stacked, 2 * n, h, w),
            false,
        );
        let mut bn = BnContext::eval(&store);
        let pred_eval = forward(&mut tape, &params, &mut bn, &x, None);
        c.check(&file, "pred.eval", &gpu.download(&pred_eval.t).unwrap());
        drop(params);
        drop(tape);

        // One Adam step (lr 1e-3, t = 1).
        let mut adam = Adam::new(asna::ops::adam::AdamConfig {
            lr: 1e-3,
            ..Default::default()
        });
        adam.step(&gpu, &store, &grads, 1e-3);
        for spec in specs.0.iter().filter(|s| s.trainable) {
            c.check(
                &file,
                &format!("adam1.{}", spec.name),
                &to_file(spec, &gpu.download(store.get(&spec.name)).unwrap()),
            );
        }
        for (name, t) in updates {
            store.set(&name, t);
        }
        c.finish(&path.display().to_string());
    }
}

#[test]
fn sorter_matches_pytorch_oracle() {
    for path in golden_files("sorter_golden_s") {
        let gpu = Gpu::default_adapter().expect("adapter");
        let file = TensorFile::read(&path).unwrap();
        let specs = sorter::specs();
        let store = store_from(&gpu, &file, &specs, "");
        let (ishape, input) = file.float("input").unwrap();
        let (_, ranks) = file.float("ranks").unwrap();
        let mut c = Checker {
            failures: vec![],
            checked: 0,
        };

        let mut tape = Tape::new(&gpu);
        let params = Bound::new(&mut tape, &store, true);
        let v = tape.leaf(gpu.upload(&ishape, &input), false);
        let target = tape.leaf(gpu.upload(&ishape, &ranks), false);
        let mut bn = BnContext::train(&store);
        let out = sorter::forward(&mut tape, &params, &mut bn, &v);
        let mae = tape.mae(&out, &target);
        c.check(&file, "out.train", &gpu.download(&out.t).unwrap());
        c.check(&file, "loss.mae", &gpu.download(&mae.t).unwrap());
        tape.backward(&mae);
        for spec in specs.0.iter().filter(|s| s.trainable) {
            let g = tape
                .grad(params.var(&spec.name))
                .unwrap_or_else(|| panic!("no gradient for {}", spec.name));
            c.check(
                &file,
                &format!("grad.{}", spec.name),
                &to_file(spec, &gpu.download(g).unwrap()),
            );
        }
        for (name, t) in &bn.updates {
            c.check(&file, &format!("updated.{name}"), &gpu.download(t).unwrap());
        }
        let oracle_updates = file
            .floats
            .keys()
            .filter(|k| k.starts_with("updated."))
            .count();
        assert_eq!(
            [bn.updates.len(), oracle_updates],
            [specs.0.iter().filter(|s| !s.trainable).count(); 2],
            "every running statistic of the sorter is updated, as in the oracle"
        );

        let mut tape = Tape::inference(&gpu);
        let params = Bound::new(&mut tape, &store, false);
        let v = tape.leaf(gpu.upload(&ishape, &input), false);
        let mut bn = BnContext::eval(&store);
        let out = sorter::forward(&mut tape, &params, &mut bn, &v);
        c.check(&file, "out.eval", &gpu.download(&out.t).unwrap());
        c.finish(&path.display().to_string());
    }
}
