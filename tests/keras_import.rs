//! `asna import-keras` against what Keras itself computes with the same file. The fixture
//! directory ($ASNA_KERAS_FIXTURE_DIR, default ../shared/fixtures/keras2-asna) holds one
//! Keras 2 whole-model HDF5 file of the ASNA attention model, image pairs, Keras's
//! predictions (`expected.json`) and Keras's intermediate tensors for pair 0
//! (`pair0_activations.safetensors`); a directory without a model fails. Nothing here
//! depends on the fixture's layer names or numbering, so another file made the same way
//! passes unchanged. Damaged and foreign files must be refused with one line and no output.

use asna::model::asna::predict;
use asna::model::asna::specs;
use asna::model::params::ParamStore;
use asna::model::weights::TensorFile;
use hdf5_pure::AttrValue;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Keras's predictions, in its own (standardised) units, must be met this closely.
const PRED_TOLERANCE: f64 = 1e-4;
/// Relative error of the intermediate tensors, ||asna - keras|| / ||keras||.
const TENSOR_TOLERANCE: f64 = 1e-4;

fn fixture_dir() -> PathBuf {
    std::env::var_os("ASNA_KERAS_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/keras2-asna")
        })
}

fn fixture_model() -> PathBuf {
    let dir = fixture_dir();
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("Keras fixture directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("hdf5" | "h5")))
        .collect();
    models.sort();
    assert!(
        !models.is_empty(),
        "no Keras model (*.hdf5) in {}",
        dir.display()
    );
    models.remove(0)
}

fn expected() -> Value {
    let path = fixture_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-keras-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A run of the binary may take this long; one that hangs is killed.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The address space a refused import may use (KiB): far more than the importer needs, far
/// less than what a file's declarations would allocate if they were trusted.
const REFUSED_IMPORT_MEMORY_KIB: u64 = 2 << 20;

fn asna(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asna"));
    cmd.args(args);
    run_with_timeout(cmd)
}

/// Runs `cmd` with its output captured, killing it after TIMEOUT.
fn run_with_timeout(mut cmd: Command) -> Output {
    cmd.env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let read_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let read_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} hung: killed after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: read_out.join().unwrap(),
        stderr: read_err.join().unwrap(),
    }
}

/// `asna import-keras` with its address space limited to REFUSED_IMPORT_MEMORY_KIB (where
/// the shell can limit it), so that trusting a file's declared sizes fails the test instead
/// of exhausting the machine.
fn import_with_memory_limit(model: &Path, out: &Path) -> Output {
    if !cfg!(unix) {
        return import(model, out);
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {REFUSED_IMPORT_MEMORY_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_asna"))
        .arg("import-keras")
        .arg(model)
        .arg("--out")
        .arg(out);
    run_with_timeout(cmd)
}

fn import(model: &Path, out: &Path) -> Output {
    asna(&[
        "import-keras",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn imported_model_scores_the_pairs_as_keras_does_in_both_input_orders() {
    let dir = temp_dir("score");
    let out = dir.join("model.safetensors");
    let r = import(&fixture_model(), &out);
    assert!(
        r.status.success(),
        "import-keras failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );

    // The checkpoint carries the authors' PIPAL scale, so `score` prints PIPAL MOS.
    let meta = TensorFile::read(&out).unwrap().metadata;
    let mean: f64 = meta["label_mean"].parse().unwrap();
    let std: f64 = meta["label_std"].parse().unwrap();
    let exp = expected();
    if let Some(scale) = exp.get("pipal_scale") {
        assert_eq!(mean, scale["mu"].as_f64().unwrap());
        assert_eq!(std, scale["std"].as_f64().unwrap());
    }

    // Each pair as Keras saw it (reference first) and with the inputs exchanged; the images
    // are copied next to the list, whose paths are relative.
    let fixture = fixture_dir();
    let pairs = exp["pairs"].as_array().expect("expected.json lists pairs");
    let mut list = String::from("ref,dist\n");
    let mut want = Vec::new();
    for p in pairs {
        let (r, d) = (p["ref"].as_str().unwrap(), p["dist"].as_str().unwrap());
        for name in [r, d] {
            std::fs::copy(fixture.join(name), dir.join(name)).unwrap();
        }
        list += &format!("{r},{d}\n");
        want.push(("pred", p["pred"].as_f64().unwrap()));
        list += &format!("{d},{r}\n");
        want.push((
            "pred_inputs_swapped",
            p["pred_inputs_swapped"].as_f64().unwrap(),
        ));
    }
    let list_path = dir.join("pairs.csv");
    std::fs::write(&list_path, list).unwrap();
    let r = asna(&[
        "score",
        "--pairs",
        list_path.to_str().unwrap(),
        "--weights",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        r.status.success(),
        "score failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let stdout = String::from_utf8(r.stdout).unwrap();
    let scores: Vec<f64> = stdout
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(scores.len(), want.len(), "{stdout}");
    let mut worst = 0.0f64;
    for (i, (score, (what, keras))) in scores.iter().zip(&want).enumerate() {
        let pred = (score - mean) / std;
        let diff = (pred - keras).abs();
        worst = worst.max(diff);
        assert!(
            diff <= PRED_TOLERANCE,
            "pair {} {what}: asna {pred:.7}, Keras {keras:.7} (difference {diff:.2e})",
            i / 2
        );
    }
    eprintln!("largest difference from Keras's predictions: {worst:.2e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Relative L2 error ||got - want|| / ||want||: the tensor as a whole, because an elementwise
/// relative error is meaningless where Keras's value is (or is near) zero, as after a ReLU.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
    num / den.max(f64::MIN_POSITIVE)
}

#[test]
fn intermediate_tensors_of_pair_0_match_keras() {
    let gpu = asna::gpu::Gpu::default_adapter().expect("a GPU adapter (lavapipe on CI)");
    let imported = asna::import::keras::import(&fixture_model()).unwrap();
    let store =
        ParamStore::from_file_tensors(&gpu, &specs(), |n| imported.tensor(n), "imported").unwrap();
    let exp = expected();
    let pair = &exp["pairs"][0];
    let fixture = fixture_dir();
    let load = |key: &str| {
        asna::data::load_rgb(&fixture.join(pair[key].as_str().unwrap()))
            .unwrap()
            .into_raw()
    };
    let (r, d) = (load("ref"), load("dist"));
    let mut taps = asna::model::asna::Taps::default();
    let z = predict(&gpu, &store, &r, &d, 1, Some(&mut taps));
    let z = gpu.download(&z).unwrap()[0] as f64;
    assert!((z - pair["pred"].as_f64().unwrap()).abs() <= PRED_TOLERANCE);

    let keras = TensorFile::read(&fixture.join("pair0_activations.safetensors")).unwrap();
    // The reference's encoder features are the first half of the stacked [R; D] batch.
    let first_half = |t: &asna::gpu::Tensor| {
        let v = gpu.download(t).unwrap();
        v[..v.len() / 2].to_vec()
    };
    let whole = |t: &Option<asna::gpu::Tensor>| gpu.download(t.as_ref().unwrap()).unwrap();
    let ours: Vec<(&str, Vec<f32>)> = vec![
        ("enc.y3.ref", first_half(&taps.encoder[2])),
        ("enc.y4.ref", first_half(&taps.encoder[3])),
        ("dec.out", whole(&taps.decoder_out)),
        ("att.out", whole(&taps.attention_out)),
        ("head.flatten", whole(&taps.head_input)),
        ("head.fc1", whole(&taps.head_hidden)),
    ];
    let mut failures = Vec::new();
    for (name, got) in ours {
        let (shape, want) = keras
            .float(name)
            .unwrap_or_else(|| panic!("pair0_activations.safetensors lacks {name}"));
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: {} values, Keras {shape:?}",
            got.len()
        );
        let e = rel_err(&got, &want);
        eprintln!("{name:>13}: relative error {e:.2e}");
        if e.is_nan() || e > TENSOR_TOLERANCE {
            failures.push(format!("{name}: relative error {e:.2e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
}

/// Runs the import of `model` and checks it is refused: exit status 1, one line naming the
/// file and containing `expect`, no panic, and nothing written to the output directory.
#[track_caller]
fn assert_refused(model: &Path, expect: &str) {
    // Tests run in parallel: each refusal writes into a directory of its own.
    static NEXT_OUT_DIR: AtomicUsize = AtomicUsize::new(0);
    let dir = temp_dir(&format!(
        "refused-out-{}",
        NEXT_OUT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let out = dir.join("model.safetensors");
    let r = import_with_memory_limit(model, &out);
    let stderr = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{}: {stderr}", model.display());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let name = model.file_name().unwrap().to_string_lossy().to_string();
    assert!(stderr.contains(&name), "names the file: {stderr}");
    // The problem must be in the message itself, not in the file's name.
    let message = stderr.replace(&model.display().to_string(), "MODEL");
    assert!(
        message.to_lowercase().contains(&expect.to_lowercase()),
        "expected \"{expect}\" in: {stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
    eprintln!("{}", stderr.trim_end());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_missing_empty_foreign_and_truncated_files() {
    let dir = temp_dir("bad-files");
    assert_refused(&dir.join("absent.hdf5"), "cannot read");
    std::fs::write(dir.join("empty.hdf5"), b"").unwrap();
    assert_refused(&dir.join("empty.hdf5"), "empty file");
    let png = dir.join("image.hdf5");
    std::fs::copy(
        fixture_dir().join(expected()["pairs"][0]["ref"].as_str().unwrap()),
        &png,
    )
    .unwrap();
    assert_refused(&png, "not an HDF5 file");

    // Cut anywhere: in the superblock, the metadata, or the weights.
    let bytes = std::fs::read(fixture_model()).unwrap();
    for cut in [
        40,
        bytes.len() / 100,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 100,
    ] {
        let path = dir.join(format!("cut-{cut}.hdf5"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert_refused(&path, "truncated");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_other_architectures() {
    let dir = temp_dir("other-arch");
    // An HDF5 file that is not a Keras model at all.
    let plain = dir.join("plain.hdf5");
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("x").with_f32_data(&[1.0, 2.0]);
    b.write(&plain).unwrap();
    assert_refused(&plain, "no \"model_config\"");

    // A Keras model of another architecture (a one-layer dense network).
    let config = serde_json::json!({
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": [
                {"class_name": "InputLayer", "name": "input_1",
                 "config": {"name": "input_1", "batch_input_shape": [null, 4]}, "inbound_nodes": []},
                {"class_name": "Dense", "name": "dense",
                 "config": {"name": "dense", "units": 1, "activation": "linear", "use_bias": true},
                 "inbound_nodes": [[["input_1", 0, 0, {}]]]}
            ],
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense", 0, 0]]
        }
    });
    let other = dir.join("dense.hdf5");
    let mut b = hdf5_pure::FileBuilder::new();
    b.set_attr("model_config", AttrValue::VarLenString(config.to_string()));
    b.set_attr("keras_version", AttrValue::VarLenString("2.4.0".into()));
    b.write(&other).unwrap();
    assert_refused(&other, "not the ASNA attention model");

    // The ASNA model with a leaky ReLU of another slope, which asna cannot express.
    let file = hdf5_pure::File::open(fixture_model()).unwrap();
    let config = file.root().attrs().unwrap()["model_config"]
        .as_str()
        .unwrap()
        .to_string();
    let mut json: Value = serde_json::from_str(&config).unwrap();
    fn set_first_leaky_slope(v: &mut Value) -> bool {
        match v {
            Value::Object(o) => {
                if o.get("class_name").and_then(Value::as_str) == Some("LeakyReLU") {
                    o["config"]["alpha"] = serde_json::json!(0.3);
                    return true;
                }
                o.values_mut().any(set_first_leaky_slope)
            }
            Value::Array(a) => a.iter_mut().any(set_first_leaky_slope),
            _ => false,
        }
    }
    assert!(
        set_first_leaky_slope(&mut json),
        "the model has leaky ReLUs"
    );
    let edited = dir.join("slope.hdf5");
    std::fs::copy(fixture_model(), &edited).unwrap();
    let session = hdf5_pure::File::open_rw(&edited).unwrap();
    session
        .root()
        .set_attr("model_config", AttrValue::VarLenString(json.to_string()))
        .unwrap();
    session.commit().unwrap();
    drop(session);
    assert_refused(&edited, "slope 0.3");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The groups under `model_weights` that hold weights, with their weight names.
fn weight_groups(model: &Path) -> Vec<(String, Vec<String>)> {
    let file = hdf5_pure::File::open(model).unwrap();
    let layers = file.group("model_weights").unwrap().attrs().unwrap()["layer_names"]
        .as_strings()
        .unwrap()
        .to_vec();
    layers
        .into_iter()
        .filter_map(|l| {
            let g = format!("model_weights/{l}");
            let attrs = file.group(&g).ok()?.attrs().ok()?;
            let names = attrs.get("weight_names")?.as_strings()?.to_vec();
            (!names.is_empty()).then_some((g, names))
        })
        .collect()
}

#[test]
fn refuses_missing_and_misshapen_weights() {
    let dir = temp_dir("weights");
    let model = fixture_model();
    let groups = weight_groups(&model);
    // The last layer with weights (the score's dense layer) loses its kernel.
    let (group, names) = groups.last().unwrap();
    let missing = dir.join("missing.hdf5");
    std::fs::copy(&model, &missing).unwrap();
    let session = hdf5_pure::File::open_rw(&missing).unwrap();
    session
        .root()
        .delete(&format!("{group}/{}", names[0]))
        .unwrap();
    session.commit().unwrap();
    drop(session);
    assert_refused(
        &missing,
        &format!("missing dataset \"{group}/{}\"", names[0]),
    );

    // A convolution kernel of the wrong shape.
    // A layer of its own (kernel and bias) rather than the nested encoder's group.
    let (group, names) = groups
        .iter()
        .find(|(_, n)| n.len() == 2 && n.iter().any(|w| w.contains("kernel")))
        .unwrap();
    let kernel = names.iter().find(|n| n.contains("kernel")).unwrap();
    let misshapen = dir.join("misshapen.hdf5");
    std::fs::copy(&model, &misshapen).unwrap();
    let session = hdf5_pure::File::open_rw(&misshapen).unwrap();
    let path = format!("{group}/{kernel}");
    session.root().delete(&path).unwrap();
    session
        .root()
        .create_dataset(&path, |b| {
            b.with_f32_data(&[0.5; 6]).with_shape(&[1, 1, 2, 3]);
        })
        .unwrap();
    session.commit().unwrap();
    drop(session);
    assert_refused(&misshapen, "has shape [1, 1, 2, 3]");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_fixed_length_string_attributes_as_older_keras_wrote_them() {
    // h5py 2 (with Keras up to 2.4) stored model_config and the name lists as fixed-length
    // strings; h5py 3 stores variable-length ones. Both must give the same model.
    let dir = temp_dir("fixed-strings");
    let model = fixture_model();
    let copy = dir.join("fixed.hdf5");
    std::fs::copy(&model, &copy).unwrap();
    let file = hdf5_pure::File::open(&model).unwrap();
    let root_attrs = file.root().attrs().unwrap();
    let layer_names = file.group("model_weights").unwrap().attrs().unwrap()["layer_names"]
        .as_strings()
        .unwrap()
        .to_vec();
    let session = hdf5_pure::File::open_rw(&copy).unwrap();
    for (name, value) in &root_attrs {
        if let Some(s) = value.as_str() {
            session
                .root()
                .set_attr(name, AttrValue::String(s.to_string()))
                .unwrap();
        }
    }
    session
        .group("model_weights")
        .unwrap()
        .set_attr("layer_names", AttrValue::StringArray(layer_names))
        .unwrap();
    for (group, names) in weight_groups(&model) {
        session
            .group(&group)
            .unwrap()
            .set_attr("weight_names", AttrValue::StringArray(names))
            .unwrap();
    }
    session.commit().unwrap();
    drop(session);
    let reread = hdf5_pure::File::open(&copy).unwrap();
    assert!(matches!(
        reread.root().attrs().unwrap()["model_config"],
        AttrValue::String(_)
    ));

    let a = asna::import::keras::import(&model).unwrap();
    let b = asna::import::keras::import(&copy).unwrap();
    assert_eq!(a.tensors, b.tensors);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_concatenation_in_another_order_gives_the_same_model() {
    // The decoder's deepest concatenation joins two 64-channel tensors (upsampled features,
    // feature difference) for a convolution of 128 input channels. With its inputs exchanged
    // and that convolution's input channels exchanged to match, Keras computes the same
    // function, and the import must give the same checkpoint.
    let dir = temp_dir("concat-order");
    let model = fixture_model();
    let file = hdf5_pure::File::open(&model).unwrap();
    let config = file.root().attrs().unwrap()["model_config"]
        .as_str()
        .unwrap()
        .to_string();
    let mut json: Value = serde_json::from_str(&config).unwrap();
    let layers = json["config"]["layers"].as_array().unwrap().clone();
    let class_of = |name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .map(|l| l["class_name"].as_str().unwrap().to_string())
    };
    let (conv, concat, kernel_path, shape, kernel) = layers
        .iter()
        .filter(|l| l["class_name"] == "Conv2D")
        .find_map(|l| {
            let input = l["inbound_nodes"][0][0][0].as_str()?;
            if class_of(input)? != "Concatenate" {
                return None;
            }
            let name = l["name"].as_str()?;
            let group = format!("model_weights/{name}");
            let names = file.group(&group).ok()?.attrs().ok()?["weight_names"]
                .as_strings()?
                .to_vec();
            let path = format!("{group}/{}", names.iter().find(|n| n.contains("kernel"))?);
            let ds = file.dataset(&path).ok()?;
            let shape = ds.shape().ok()?;
            (shape[2] == 128).then(|| {
                (
                    name.to_string(),
                    input.to_string(),
                    path,
                    shape,
                    ds.read_f32().unwrap(),
                )
            })
        })
        .expect("a convolution of 128 input channels reading a concatenation");
    for l in json["config"]["layers"].as_array_mut().unwrap() {
        if l["name"] == concat.as_str() {
            l["inbound_nodes"][0].as_array_mut().unwrap().reverse();
        }
    }
    let (cin, cout) = (shape[2] as usize, shape[3] as usize);
    let mut swapped = vec![0.0f32; kernel.len()];
    for (i, v) in swapped.iter_mut().enumerate() {
        let (tap, c, o) = (i / (cin * cout), i / cout % cin, i % cout);
        *v = kernel[(tap * cin + (c + cin / 2) % cin) * cout + o];
    }
    let copy = dir.join("swapped.hdf5");
    std::fs::copy(&model, &copy).unwrap();
    let session = hdf5_pure::File::open_rw(&copy).unwrap();
    session
        .root()
        .set_attr("model_config", AttrValue::VarLenString(json.to_string()))
        .unwrap();
    session.root().delete(&kernel_path).unwrap();
    session
        .root()
        .create_dataset(&kernel_path, |b| {
            b.with_f32_data(&swapped).with_shape(&shape);
        })
        .unwrap();
    session.commit().unwrap();
    drop(session);

    let a = asna::import::keras::import(&model).unwrap();
    let b = asna::import::keras::import(&copy).unwrap();
    assert!(
        a.tensors == b.tensors,
        "{conv}: the exchanged concatenation changes the model"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- hostile files ----------------------------------------------------------------------

fn fixture_config() -> Value {
    let file = hdf5_pure::File::open(fixture_model()).unwrap();
    let config = file.root().attrs().unwrap()["model_config"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_str(&config).unwrap()
}

/// A model file holding only `config`: the graph is matched before any weight is read.
fn config_only(path: &Path, config: &Value) {
    let mut b = hdf5_pure::FileBuilder::new();
    b.set_attr("model_config", AttrValue::VarLenString(config.to_string()));
    b.write(path).unwrap();
}

/// A writable copy of the fixture at `path`, with `edit` applied and committed.
fn edited_fixture(path: &Path, edit: impl FnOnce(&hdf5_pure::File)) {
    std::fs::copy(fixture_model(), path).unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).unwrap();
    let session = hdf5_pure::File::open_rw(path).unwrap();
    edit(&session);
    session.commit().unwrap();
}

/// The kernel of a convolution with a group of its own (kernel and bias): its dataset path
/// and shape.
fn own_conv_kernel(model: &Path) -> (String, Vec<u64>) {
    let (group, names) = weight_groups(model)
        .into_iter()
        .find(|(_, n)| n.len() == 2 && n.iter().any(|w| w.contains("kernel")))
        .unwrap();
    let kernel = names.iter().find(|n| n.contains("kernel")).unwrap();
    let path = format!("{group}/{kernel}");
    let shape = hdf5_pure::File::open(model)
        .unwrap()
        .dataset(&path)
        .unwrap()
        .shape()
        .unwrap();
    assert_eq!(shape.len(), 4, "{path}");
    (path, shape)
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Bob Jenkins's lookup3 `hashlittle` with seed 0: the checksum of HDF5's version-2 metadata.
fn lookup3(data: &[u8]) -> u32 {
    let word = |k: &[u8]| u32::from_le_bytes(k.try_into().unwrap());
    let mut a = 0xdead_beefu32.wrapping_add(data.len() as u32);
    let (mut b, mut c) = (a, a);
    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        a = a.wrapping_sub(c) ^ c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c) ^ c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(4);
        b = b.wrapping_add(a);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return c;
    }
    let mut tail = [0u8; 12];
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(word(&tail[0..4]));
    b = b.wrapping_add(word(&tail[4..8]));
    c = c.wrapping_add(word(&tail[8..12]));
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    (c ^ b).wrapping_sub(b.rotate_left(24))
}

/// Overwrites `bytes[at..]` with `new` inside a version-2 object header (as hdf5-pure writes
/// them) and stamps the header's checksum again.
fn patch_object_header(bytes: &mut [u8], at: usize, new: &[u8]) {
    let start = *find_all(&bytes[..at], b"OHDR")
        .last()
        .expect("a version-2 object header");
    let flags = bytes[start + 5];
    let mut pos = start + 6;
    if flags & 0x20 != 0 {
        pos += 16; // times
    }
    if flags & 0x10 != 0 {
        pos += 4; // attribute phase change values
    }
    let width = 1usize << (flags & 3);
    let mut size = [0u8; 8];
    size[..width].copy_from_slice(&bytes[pos..pos + width]);
    let end = pos + width + u64::from_le_bytes(size) as usize;
    assert!(
        at + new.len() <= end,
        "the patch leaves the header's first chunk"
    );
    let stored = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap());
    assert_eq!(stored, lookup3(&bytes[start..end]), "checksum scheme");
    bytes[at..at + new.len()].copy_from_slice(new);
    let sum = lookup3(&bytes[start..end]);
    bytes[end..end + 4].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn refuses_devices_fifos_and_oversized_files_without_reading_them() {
    let dir = temp_dir("not-regular");
    // Sparse: a size declared, nothing written.
    let large = dir.join("large.hdf5");
    std::fs::File::create(&large)
        .unwrap()
        .set_len(asna::import::hdf5::MAX_MODEL_FILE_BYTES + 1)
        .unwrap();
    assert_refused(
        &large,
        "bytes, more than the 1073741824 that a keras .hdf5 model file may have",
    );
    assert_refused(&dir, "is a directory, expected a Keras .hdf5 model file");
    #[cfg(unix)]
    {
        assert_refused(
            Path::new("/dev/zero"),
            "is a character device, expected a Keras .hdf5 model file",
        );
        // Opening a FIFO waits for a writer: it must be refused unopened.
        let fifo = dir.join("fifo.hdf5");
        let made = Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert_refused(&fifo, "is a FIFO, expected a Keras .hdf5 model file");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_layer_graphs_with_cycles() {
    let dir = temp_dir("cycles");
    let base = fixture_config();
    let with = |extra: Vec<Value>, edit: &dyn Fn(&mut Value)| {
        let mut config = base.clone();
        config["config"]["layers"]
            .as_array_mut()
            .unwrap()
            .extend(extra);
        edit(&mut config);
        config
    };
    let reads = |class: &str, name: &str, input: &str, config: Value| {
        serde_json::json!({
            "class_name": class, "name": name, "config": config,
            "inbound_nodes": [[[input, 0, 0, {}]]]
        })
    };
    let dropout = serde_json::json!({"name": "loop", "rate": 0.5});
    let cases = [
        // The score read through a Dropout that reads itself.
        (
            "self.hdf5",
            with(
                vec![reads("Dropout", "loop", "loop", dropout.clone())],
                &|c| {
                    c["config"]["output_layers"] = serde_json::json!([["loop", 0, 0]]);
                },
            ),
        ),
        // Two layers reading each other.
        (
            "pair.hdf5",
            with(
                vec![
                    reads("Dropout", "loop", "back", dropout.clone()),
                    reads("Dropout", "back", "loop", dropout.clone()),
                ],
                &|c| c["config"]["output_layers"] = serde_json::json!([["loop", 0, 0]]),
            ),
        ),
        // A residual block's branch through an activation that reads itself.
        (
            "activation.hdf5",
            with(
                vec![reads(
                    "Activation",
                    "loop",
                    "loop",
                    serde_json::json!({"name": "loop", "activation": "relu"}),
                )],
                &|c| {
                    let add = c["config"]["layers"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .find(|l| l["class_name"] == "Add")
                        .expect("the model has residual blocks");
                    add["inbound_nodes"][0][0][0] = serde_json::json!("loop");
                },
            ),
        ),
    ];
    for (name, config) in cases {
        let path = dir.join(name);
        config_only(&path, &config);
        assert_refused(
            &path,
            "depends on its own output (model_config has a cycle)",
        );
    }
    // A layer reading itself, beside a second layer of its name that a lookup by name could
    // find instead.
    let path = dir.join("twins.hdf5");
    config_only(
        &path,
        &with(
            vec![
                reads("Dropout", "loop", "loop", dropout.clone()),
                reads("Dropout", "loop", "input_1", dropout.clone()),
            ],
            &|c| c["config"]["output_layers"] = serde_json::json!([["loop", 0, 0]]),
        ),
    );
    assert_refused(&path, "has two layers named \"loop\" in model_config");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_declared_sizes_other_than_the_expected_shape_before_allocating() {
    // A convolution kernel declaring 120 GB, then 3 GB: each is refused on its shape, within
    // the memory limit that assert_refused sets, before any of it is read.
    let dir = temp_dir("declared-size");
    let model = fixture_model();
    let (kernel, _) = own_conv_kernel(&model);
    // Written small (one chunk), then its declared last dimension is raised in place.
    const WRITTEN: u64 = 77_777;
    for declared in [30_000_000_000u64, 750_000_000] {
        let path = dir.join(format!("declares-{declared}.hdf5"));
        edited_fixture(&path, |f| {
            f.root().delete(&kernel).unwrap();
            f.root()
                .create_dataset(&kernel, |b| {
                    b.with_f32_data(&vec![0.5; WRITTEN as usize])
                        .with_shape(&[1, 1, 1, WRITTEN])
                        .with_chunks(&[1, 1, 1, WRITTEN]);
                })
                .unwrap();
        });
        let mut bytes = std::fs::read(&path).unwrap();
        let at = find_all(&bytes, &WRITTEN.to_le_bytes());
        assert_eq!(at.len(), 1, "the dimension is written once");
        patch_object_header(&mut bytes, at[0], &declared.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_refused(&path, &format!("has shape [1, 1, 1, {declared}], expected"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_batch_norm_epsilons_that_are_not_small_and_positive() {
    let dir = temp_dir("epsilon");
    for (name, eps, shown) in [
        ("huge.hdf5", serde_json::json!(1e300), "1e+300"),
        ("negative.hdf5", serde_json::json!(-0.001), "-0.001"),
        ("text.hdf5", serde_json::json!("0.001"), "\"0.001\""),
    ] {
        let mut config = fixture_config();
        let bn = config["config"]["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|l| l["class_name"] == "BatchNormalization")
            .expect("the decoder has batch norms");
        bn["config"]["epsilon"] = eps;
        let path = dir.join(name);
        edited_fixture(&path, |f| {
            f.root()
                .set_attr("model_config", AttrValue::VarLenString(config.to_string()))
                .unwrap();
        });
        assert_refused(
            &path,
            &format!("has epsilon {shown}, expected a small positive number"),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_two_weights_of_one_name() {
    let dir = temp_dir("duplicate");
    let (group, names) = weight_groups(&fixture_model())
        .into_iter()
        .find(|(_, n)| n.len() == 2 && n.iter().any(|w| w.contains("kernel")))
        .unwrap();
    let group = group.as_str();
    let name = names.iter().find(|n| n.contains("kernel")).unwrap();
    // A second variable of the same layer and name, listed after the first.
    let second = name.replace(":0", ":1");
    assert_ne!(&second, name);
    let path = dir.join("twice.hdf5");
    edited_fixture(&path, |f| {
        let mut listed = names.clone();
        listed.push(second.clone());
        f.root()
            .create_dataset(&format!("{group}/{second}"), |b| {
                b.with_f32_data(&[0.5; 4]).with_shape(&[1, 1, 2, 2]);
            })
            .unwrap();
        f.group(group)
            .unwrap()
            .set_attr("weight_names", AttrValue::StringArray(listed))
            .unwrap();
    });
    assert_refused(&path, "has two weights named \"kernel\"");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_compressed_half_precision_and_integer_weights_by_name() {
    let dir = temp_dir("storage");
    let model = fixture_model();
    let (kernel, shape) = own_conv_kernel(&model);
    let count = shape.iter().product::<u64>() as usize;
    let replaced = |name: &str, build: &dyn Fn(&mut hdf5_pure::DatasetBuilder)| {
        let path = dir.join(name);
        edited_fixture(&path, |f| {
            f.root().delete(&kernel).unwrap();
            f.root().create_dataset(&kernel, build).unwrap();
        });
        path
    };

    // gzip: written with LZF, which hdf5-pure writes without a feature, and relabelled.
    let gzip = replaced("gzip.hdf5", &|b| {
        b.with_f32_data(&vec![0.5; count])
            .with_shape(&shape)
            .with_chunks(&shape)
            .with_lzf();
    });
    let mut bytes = std::fs::read(&gzip).unwrap();
    let lzf = find_all(&bytes, b"lzf\0");
    assert_eq!(lzf.len(), 1);
    // Filter pipeline version 2: id, name length, flags, value count, name.
    let id_at = lzf[0] - 8;
    assert_eq!(bytes[id_at..id_at + 2], 32000u16.to_le_bytes());
    patch_object_header(&mut bytes, id_at, &1u16.to_le_bytes());
    std::fs::write(&gzip, &bytes).unwrap();
    assert_refused(
        &gzip,
        "is stored with gzip (deflate) compression, which is not supported",
    );

    let half = hdf5_pure::Datatype::FloatingPoint {
        size: 2,
        byte_order: hdf5_pure::DatatypeByteOrder::LittleEndian,
        layout: hdf5_pure::FloatingPointLayout {
            bit_offset: 0,
            bit_precision: 16,
            exponent_location: 10,
            exponent_size: 5,
            mantissa_location: 0,
            mantissa_size: 10,
            exponent_bias: 15,
        },
    };
    let f16 = replaced("f16.hdf5", &|b| {
        b.with_raw_data(half.clone(), vec![0; 2 * count], count as u64)
            .with_shape(&shape);
    });
    assert_refused(&f16, "holds 16-bit floats, expected 32- or 64-bit floats");

    let ints = replaced("ints.hdf5", &|b| {
        b.with_i32_data(&vec![1; count]).with_shape(&shape);
    });
    assert_refused(&ints, "holds integers (i32), expected 32- or 64-bit floats");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_convolution_of_another_kernel_size_is_shown_as_model_config_has_it() {
    let dir = temp_dir("kernel-size");
    let mut config = fixture_config();
    for l in config["config"]["layers"].as_array_mut().unwrap() {
        if l["class_name"] == "Conv2D" {
            l["config"]["kernel_size"] = serde_json::json!([7, 7]);
        }
    }
    let path = dir.join("kernel.hdf5");
    config_only(&path, &config);
    assert_refused(&path, "has kernel_size [7,7], expected");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- outputs ----------------------------------------------------------------------------

/// Checks the import's stderr is one line naming `name` and containing `problem`, exit 1.
#[track_caller]
fn assert_output_refused(r: &Output, name: &str, problem: &str) {
    let stderr = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(name), "names {name}: {stderr}");
    assert!(
        stderr.contains(problem),
        "expected \"{problem}\" in: {stderr}"
    );
}

#[test]
fn refuses_an_output_that_is_the_input_a_device_or_a_directory() {
    let dir = temp_dir("outputs");
    let model = dir.join("model.hdf5");
    std::fs::copy(fixture_model(), &model).unwrap();
    let original = std::fs::read(&model).unwrap();

    // The same file under another spelling.
    let same = dir.join(".").join("model.hdf5");
    let r = import(&model, &same);
    assert_output_refused(&r, "model.hdf5", "is the same file as the input model");
    assert!(
        std::fs::read(&model).unwrap() == original,
        "the input was changed"
    );

    // A directory: refused before anything is written, so no temporary file is left.
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let r = import(&model, &out_dir);
    assert_output_refused(
        &r,
        "out",
        "is a directory, not a regular file; refusing to replace it",
    );

    #[cfg(unix)]
    {
        let r = import(&model, Path::new("/dev/null"));
        assert_output_refused(
            &r,
            "/dev/null",
            "is a character device, not a regular file; refusing to replace it",
        );
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["model.hdf5", "out"], "files left behind");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_replaced_output_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    let out = dir.join("model.safetensors");
    std::fs::write(&out, b"old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = import(&fixture_model(), &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(std::fs::metadata(&out).unwrap().len() > 3, "not replaced");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::remove_dir_all(&dir).unwrap();
}
