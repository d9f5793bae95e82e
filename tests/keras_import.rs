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
use std::path::{Path, PathBuf};
use std::process::Output;

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

fn asna(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_asna"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
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
    let dir = temp_dir("refused-out");
    let out = dir.join("model.safetensors");
    let r = import(model, &out);
    let stderr = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{}: {stderr}", model.display());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let name = model.file_name().unwrap().to_string_lossy().to_string();
    assert!(stderr.contains(&name), "names the file: {stderr}");
    assert!(
        stderr.to_lowercase().contains(&expect.to_lowercase()),
        "expected \"{expect}\" in: {stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
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
        let path = dir.join(format!("truncated-{cut}.hdf5"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert_refused(&path, "hdf5");
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
    assert_refused(&missing, "missing");

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
