"""The Python package against the command line: same scores, same conversions, same one-line
messages; arrays of every accepted type and layout; threads; errors that never abort."""

import json
import os
import pydoc
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import asna
from conftest import DEMO_DIST, DEMO_REF, REPO, cli_error, run_cli

# ---- scores equal to the command line's -------------------------------------------------


def test_demo_pair_scores_as_the_cli(model, cli_scores):
    assert model.score(DEMO_REF, DEMO_DIST) == cli_scores["dist.png"]


def test_array_scores_as_the_cli_scores_its_files(crop_score, cli_scores):
    assert crop_score == cli_scores["crop_dist.png"]


def test_score_batch_equals_single_scores(model, crop, crop_score, files):
    r, d = crop
    refs = [r, np.asfortranarray(r.astype(np.float32) / 255), d, files / "crop_ref.png"]
    dists = [d, d.astype(np.uint16) * 257, r, str(files / "crop_dist.png")]
    # Any iterables: here a list and a generator.
    scores = model.score_batch(refs, (x for x in dists))
    assert scores.dtype == np.float64 and scores.shape == (4,)
    assert scores[0] == crop_score and scores[1] == crop_score and scores[3] == crop_score
    assert scores[2] == model.score(d, r)


def test_score_batch_of_nothing(model):
    assert model.score_batch([], []).shape == (0,)


def test_ensemble_of_a_file_and_a_run_directory(crop, crop_score, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    weights = REPO / "weights" / "asna-default.safetensors"
    shutil.copy(weights, run / "best.safetensors")
    m = asna.Model([weights, run])
    assert m.weights == [str(weights), str(run / "best.safetensors")]
    # Two copies of the default model average to its own score.
    assert m.score(*crop) == crop_score


def cli_score(files, *options):
    """The full-precision score of the crop files by `asna score` with these options."""
    result = run_cli("score", "crop_ref.png", "crop_dist.png", "--format", "json", *options, cwd=files)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]["score"]


@pytest.mark.skipif(
    not os.environ.get("ASNA_SLOW_TESTS"), reason="44 windows on the GPU; set ASNA_SLOW_TESTS=1"
)
def test_tta_scores_as_the_cli(files):
    expected = cli_score(files, "--tta")
    assert asna.Model(tta=True).score(files / "crop_ref.png", files / "crop_dist.png") == expected


def test_f16_scores_as_the_cli(files):
    if "shader-f16" not in asna.devices()[0]["features"]:
        pytest.skip("the adapter lacks shader-f16")
    expected = cli_score(files, "--precision", "f16")
    m = asna.Model(precision="f16")
    assert m.score(files / "crop_ref.png", files / "crop_dist.png") == expected


def test_quality_map(model, crop):
    q = model.quality_map(*crop)
    assert q.shape == (288, 288) and q.dtype == np.float32
    assert np.isfinite(q).all() and q.min() >= 0 and q.max() > 0


# ---- arrays of every accepted type and layout --------------------------------------------


def _variants(rgb):
    """(name, input, expected RGB) for every accepted type and layout of one image."""
    gray = rgb[:, :, 1]
    gray_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    alpha = (np.arange(gray.size, dtype=np.uint32) % 251).astype(np.uint8).reshape(gray.shape)
    rgba = np.dstack([rgb, alpha])
    bigger = np.zeros((rgb.shape[0] * 2, rgb.shape[1] * 3, 4), np.uint8)
    bigger[::2, ::3, :3] = rgb
    yield "uint8", rgb, rgb
    yield "fortran order", np.asfortranarray(rgb), rgb
    yield "strided view", bigger[::2, ::3, :3], rgb
    yield "negative strides", rgb[::-1, ::-1][::-1, ::-1], rgb
    yield "channels reversed twice", rgb[:, :, ::-1][:, :, ::-1], rgb
    yield "uint16", rgb.astype(np.uint16) * 257, rgb
    yield "big-endian uint16", (rgb.astype(np.uint16) * 257).astype(">u2"), rgb
    yield "float32", rgb.astype(np.float32) / 255, rgb
    yield "float64", rgb / 255.0, rgb
    yield "float16", (rgb / 255.0).astype(np.float16), rgb
    yield "big-endian float32", (rgb / 255.0).astype(">f4"), rgb
    yield "float32 transposed view", np.ascontiguousarray((rgb / 255.0).transpose(1, 0, 2)).transpose(1, 0, 2), rgb
    yield "rgba", rgba, rgb
    yield "gray", gray, gray_rgb
    yield "gray HxWx1", gray[:, :, None], gray_rgb
    yield "gray+alpha", np.dstack([gray, alpha]), gray_rgb
    yield "gray float", gray / 255.0, gray_rgb
    yield "nested lists of floats", (rgb[:8, :8] / 255.0).tolist(), rgb[:8, :8]


@pytest.mark.parametrize("index", range(18))
def test_arrays_convert_as_the_cli_converts_images(crop, index):
    name, image, expected = list(_variants(crop[0]))[index]
    got = asna.to_rgb(image)
    assert got.dtype == np.uint8 and got.shape == expected.shape, name
    assert np.array_equal(got, expected), name


def test_pil_images_convert_as_files_do(crop, files):
    Image = pytest.importorskip("PIL.Image")
    rgb = crop[0]
    pil = Image.open(files / "crop_ref.png")
    assert np.array_equal(asna.to_rgb(pil), rgb)
    assert np.array_equal(asna.to_rgb(pil.convert("RGBA")), rgb)
    gray = pil.convert("L")
    assert np.array_equal(asna.to_rgb(gray), np.repeat(np.asarray(gray)[:, :, None], 3, axis=2))
    palette = pil.convert("P")
    assert np.array_equal(asna.to_rgb(palette), np.asarray(palette.convert("RGB")))
    # A file written by PIL reads back as PIL's pixels.
    palette.save(files / "palette.png")
    assert np.array_equal(asna.to_rgb(files / "palette.png"), asna.to_rgb(palette))


# ---- bad input: ValueError, FileNotFoundError, OSError, with the CLI's messages ----------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda r: r.transpose(2, 0, 1), "channels first"),
        (lambda r: np.dstack([r, r]), "got shape (288, 288, 6)"),
        (lambda r: r[None], "got shape (1, 288, 288, 3)"),
        (lambda r: r.astype(np.int64), "unsupported sample type int64"),
        (lambda r: r > 0, "unsupported sample type bool"),
        (lambda r: r.astype(np.float32), "float values must lie in [0, 1]"),
        (lambda r: np.full(r.shape, np.nan), "NaN"),
        (lambda r: r[:100, :100], "smaller than the required 288x288"),
        (lambda r: None, "unsupported sample type object"),
    ],
)
def test_bad_arrays_raise_value_error(model, crop, make, words):
    with pytest.raises(ValueError) as e:
        model.score(make(crop[0]), make(crop[1]))
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_size_mismatch(model, crop):
    with pytest.raises(ValueError, match="size mismatch: reference ref is 288x288 but distorted dist is 200x288"):
        model.score(crop[0], crop[1][:, :200])
    with pytest.raises(ValueError, match=r"refs\[1\]"):
        model.score_batch([crop[0], crop[0][:200]], [crop[1], crop[1]])
    with pytest.raises(ValueError, match="differ in length"):
        model.score_batch([crop[0]], [])


def test_file_errors_carry_the_cli_messages(model, files):
    missing, text = files / "missing.png", REPO / "README.md"
    cases = [
        (FileNotFoundError, missing, files / "dist.png"),
        (OSError, text, files / "dist.png"),
        (ValueError, files / "ref.png", files / "crop_dist.png"),
        (ValueError, files / "small.png", files / "small.png"),
    ]
    for kind, r, d in cases:
        with pytest.raises(kind) as e:
            model.score(str(r), str(d))
        assert str(e.value) == cli_error(r, d)
    with pytest.raises(FileNotFoundError) as e:
        model.quality_map(missing, files / "dist.png")


def test_weights_errors_carry_the_cli_messages(files):
    missing = files / "missing.safetensors"
    with pytest.raises(FileNotFoundError) as e:
        asna.Model(missing)
    assert str(e.value) == cli_error("--weights", missing, "ref.png", "dist.png")
    with pytest.raises(OSError) as e:
        asna.Model(files / "ref.png")
    assert str(e.value) == cli_error("--weights", files / "ref.png", "ref.png", "dist.png")


def test_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        asna.Model(precision="f64")
    with pytest.raises(ValueError, match="batch"):
        asna.Model(batch=0)
    with pytest.raises(RuntimeError, match="no adapter name contains"):
        asna.Model(adapter="no such adapter")


def test_adapter_by_name():
    names = [d["name"] for d in asna.devices()]
    assert asna.Model(adapter=names[0].upper()).adapter.startswith(names[0])
    if any("llvmpipe" in n for n in names):
        assert "llvmpipe" in asna.Model(adapter="lavapipe").adapter


def test_no_adapter_raises_runtime_error_saying_how_to_get_one():
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent", VK_DRIVER_FILES="/nonexistent", WGPU_BACKEND="vulkan")
    code = (
        "import asna\n"
        "assert asna.devices() == []\n"
        "try:\n    asna.Model()\n"
        "except RuntimeError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "no GPU adapter" in result.stdout and "mesa-vulkan-drivers" in result.stdout


# ---- threads and the GIL -----------------------------------------------------------------


def test_two_threads_score_while_python_runs(model, crop, crop_score):
    results = []

    def work():
        results.append(model.score(*crop))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    ticks = 0
    while any(t.is_alive() for t in threads):
        ticks += 1
        time.sleep(0.005)
    for t in threads:
        t.join()
    assert results == [crop_score, crop_score]
    # With the GIL held during GPU work this thread could not have run meanwhile.
    assert ticks > 20


# ---- the rest of the API -----------------------------------------------------------------


def test_devices_and_model_attributes(model):
    found = asna.devices()
    assert found and {"name", "backend", "type", "driver", "features"} <= set(found[0])
    assert model.lower_better is False and asna.Model.lower_better is False
    assert found[0]["name"] in model.adapter
    assert model.weights == ["embedded default model (weights/asna-default.safetensors)"]


def test_help_explains_each_argument():
    text = pydoc.render_doc(asna.Model, renderer=pydoc.plaintext)
    for arg in ["weights", "adapter", "precision", "tta", "batch", "score_batch", "quality_map"]:
        assert arg in text
