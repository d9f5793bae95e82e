"""The Python package against the command line: same scores, same conversions, same one-line
messages; arrays of every accepted type and layout; threads; errors that never abort."""

import json
import multiprocessing
import os
import pydoc
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import asna
from conftest import DEMO_DIST, DEMO_REF, REPO, cli_error, require_cli, run_cli

DEFAULT_WEIGHTS = REPO / "weights" / "asna-default.safetensors"

# ---- scores equal to the command line's -------------------------------------------------


def test_demo_pair_scores_as_the_cli(model, cli_scores):
    assert model.score(DEMO_REF, DEMO_DIST) == cli_scores["dist.png"]


# The embedded default model's score of the demo pair, as README and tests/score.rs pin it
# (it moves with the shipped weights); 1.5e-4 leaves room for the adapter's rounding.
DEMO_SCORE = 3.7397


def test_demo_pair_score_is_the_pinned_one(model):
    score = model.score(DEMO_REF, DEMO_DIST)
    assert abs(score - DEMO_SCORE) < 1.5e-4, score


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


@pytest.mark.parametrize("ext, options", [
    ("tif", {}),
    ("tiff", {"compression": "tiff_lzw"}),
    ("webp", {"lossless": True}),
])
def test_tiff_and_webp_files_score_as_the_png(model, crop, crop_score, tmp_path, ext, options):
    r, d = crop
    paths = []
    for name, pixels in (("r", r), ("d", d)):
        path = tmp_path / f"{name}.{ext}"
        Image.fromarray(pixels).save(path, **options)
        paths.append(path)
    assert model.score(*paths) == crop_score


def test_score_batch_of_nothing(model):
    assert model.score_batch([], []).shape == (0,)


def perturbed_copy(source, target, tensor="head.fc1.weight", factor=0.9):
    """Writes a copy of a model file with one tensor scaled: another valid model."""
    data = bytearray(Path(source).read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    entry = json.loads(data[8 : 8 + header_len])[tensor]
    assert entry["dtype"] == "F32"
    start, end = (8 + header_len + offset for offset in entry["data_offsets"])
    data[start:end] = (np.frombuffer(bytes(data[start:end]), dtype="<f4") * factor).astype("<f4").tobytes()
    Path(target).write_bytes(data)


def cli_score(files, *options):
    """The full-precision score of the crop files by `asna score` with these options."""
    result = run_cli("score", "crop_ref.png", "crop_dist.png", "--format", "json", *options, cwd=files)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]["score"]


def test_ensemble_of_a_file_and_a_run_directory_averages_its_members(crop, crop_score, files, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    perturbed_copy(DEFAULT_WEIGHTS, run / "best.safetensors")
    other_score = asna.Model(run).score(*crop)
    assert other_score != crop_score
    m = asna.Model([DEFAULT_WEIGHTS, run])
    assert m.weights == [str(DEFAULT_WEIGHTS), str(run / "best.safetensors")]
    ensemble_score = m.score(*crop)
    assert ensemble_score == (crop_score + other_score) / 2
    assert ensemble_score == cli_score(files, "--weights", DEFAULT_WEIGHTS, "--weights", run)


def test_tta_scores_as_the_cli(files):
    # 22 variants of one 288x288 window, the least TTA can do; the binary scores them
    # meanwhile.
    cli = subprocess.Popen(
        [str(require_cli()), "score", "crop_ref.png", "crop_dist.png", "--format", "json", "--tta"],
        cwd=files, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    got = asna.Model(tta=True).score(files / "crop_ref.png", files / "crop_dist.png")
    out, err = cli.communicate(timeout=600)
    assert cli.returncode == 0, err
    assert got == json.loads(out)[0]["score"]
    assert got != cli_score(files)


def test_f16_scores_as_the_cli(files):
    if "shader-f16" not in asna.devices()[0]["features"]:
        # An adapter without shader-f16 must refuse f16, as the binary does.
        with pytest.raises(ValueError, match="shader-f16"):
            asna.Model(precision="f16")
        return
    expected = cli_score(files, "--precision", "f16")
    m = asna.Model(precision="f16")
    assert m.score(files / "crop_ref.png", files / "crop_dist.png") == expected


def test_quality_map_is_zero_for_identical_images(model, crop):
    q = model.quality_map(crop[0], crop[0].copy())
    assert q.shape == (288, 288) and q.dtype == np.float32
    assert not q.any()


def test_quality_map_is_high_where_the_distortion_is(model, crop):
    # A non-square pair (two overlapping windows) whose only difference is a block of noise.
    ref = np.concatenate([crop[0], crop[0][:, :112]], axis=1)
    dist = ref.copy()
    block = (slice(40, 104), slice(300, 364))
    noise = np.random.default_rng(0).integers(-60, 61, dist[block].shape)
    dist[block] = np.clip(dist[block].astype(int) + noise, 0, 255).astype(np.uint8)
    q = model.quality_map(ref, dist)
    assert q.shape == (288, 400) and np.isfinite(q).all()
    assert q[block].mean() > 0.1
    # The first encoder scale sees a few pixels around each one: beyond that margin the
    # features of both images are the same.
    near = (slice(40 - 8, 104 + 8), slice(300 - 8, 364 + 8))
    outside = np.ones(q.shape, bool)
    outside[near] = False
    assert not q[outside].any()


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
    yield "negative strides", rgb[::-1, ::-1], np.ascontiguousarray(rgb[::-1, ::-1])
    yield "channels reversed", rgb[:, :, ::-1], np.ascontiguousarray(rgb[:, :, ::-1])
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


def test_negative_strides_score_as_a_contiguous_copy(model, crop):
    r, d = crop[0][::-1], crop[1][:, ::-1]
    assert r.strides[0] < 0 and d.strides[1] < 0
    assert model.score(r, d) == model.score(np.ascontiguousarray(r), np.ascontiguousarray(d))


def test_pil_images_convert_as_files_do(crop, files):
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
    # Each argument has its entry under Args ("name: what it does"), each method its
    # signature and a docstring.
    for arg in ["weights", "adapter", "precision", "tta", "batch"]:
        assert re.search(rf"^[ |]*{arg}: \S", text, re.M), arg
    for method in ["score", "score_batch", "quality_map"]:
        assert f"{method}(self, ref" in text or f"{method}(self, refs" in text, method
        assert getattr(asna.Model, method).__doc__, method


# ---- hostile input: refused at once, with a one-line message that names the argument ------


def write_flat_png(path, width, height):
    """A black RGB PNG, written in a second whatever its size (PIL would take much longer)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(1)
    row = bytes(1 + 3 * width)  # filter type 0, then the row's samples
    pixels = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def interrupted_after(delay, call):
    """Seconds from a SIGINT sent `delay` seconds into `call` until its KeyboardInterrupt."""
    sent = []

    def interrupt():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
    finally:
        timer.cancel()
    return time.monotonic() - sent[0]


def test_ctrl_c_interrupts_the_decoding_of_a_large_image(tmp_path):
    # The largest side accepted: decoding alone takes seconds.
    huge = tmp_path / "huge.png"
    write_flat_png(huge, 16384, 16384)
    assert interrupted_after(0.2, lambda: asna.to_rgb(huge)) < 0.5


def test_ctrl_c_interrupts_the_scoring_of_a_large_image(crop, crop_score):
    # 64 windows, about half a minute on lavapipe; batches of one stop quickly.
    model = asna.Model(batch=1)
    ref, dist = np.tile(crop[0], (8, 8, 1)), np.tile(crop[1], (8, 8, 1))
    assert interrupted_after(1.0, lambda: model.score(ref, dist)) < 0.5
    assert interrupted_after(0.5, lambda: model.quality_map(ref, dist)) < 0.5
    # The abandoned work stopped, and the model still scores.
    start = time.monotonic()
    assert model.score(*crop) == crop_score
    assert time.monotonic() - start < 10


def _score_in_child(model, crop, answers):
    try:
        answers.put(("score", model.score(*crop)))
    except Exception as e:
        answers.put(("score", f"{type(e).__name__}: {e}"))
    answers.put(("own model", asna.Model().score(*crop)))


def test_a_forked_child_is_refused_and_may_create_its_own_model(model, crop, crop_score):
    fork = multiprocessing.get_context("fork")
    answers = fork.Queue()
    child = fork.Process(target=_score_in_child, args=(model, crop, answers))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    assert answers.get(timeout=5) == (
        "score",
        "RuntimeError: asna: a Model cannot be used in a forked child process; "
        "create it in the child or use the 'spawn' start method of multiprocessing",
    )
    assert answers.get(timeout=5) == ("own model", crop_score)
    # The parent's model is untouched.
    assert model.score(*crop) == crop_score


@pytest.mark.parametrize("mode", ["I", "F"])
def test_pil_modes_without_a_value_range_are_refused(crop, mode):
    gray = Image.fromarray(crop[0][:, :, 1]).convert(mode)
    with pytest.raises(ValueError) as e:
        asna.to_rgb(gray)
    message = str(e.value)
    assert message.startswith(f'image: PIL image of mode "{mode}" has no fixed value range; convert it first')
    assert "\n" not in message
    # What the message proposes works.
    proposal = {"I": gray.convert("RGB") if mode == "I" else None, "F": np.asarray(gray) / 255}[mode]
    assert np.array_equal(asna.to_rgb(proposal)[:, :, 0], crop[0][:, :, 1])


def test_pil_16_bit_images_read_as_their_png_files(tmp_path):
    samples = (np.arange(288 * 288, dtype=np.uint32) * 2749 % 65536).astype(np.uint16).reshape(288, 288)
    Image.fromarray(samples).save(tmp_path / "gray16.png")
    pil = Image.open(tmp_path / "gray16.png")
    assert pil.mode == "I;16"
    assert np.array_equal(asna.to_rgb(pil), asna.to_rgb(tmp_path / "gray16.png"))
    assert np.array_equal(asna.to_rgb(pil), asna.to_rgb(samples))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"batch": 2.7}, "batch must be an int, not float"),
        ({"batch": True}, "batch must be an int, not bool"),
        ({"batch": "16"}, "batch must be an int, not str"),
        ({"tta": "no"}, "tta must be a bool (True or False), not str"),
        ({"tta": 0}, "tta must be a bool (True or False), not int"),
        ({"precision": None}, 'precision must be a str ("f32" or "f16"), not NoneType'),
        ({"adapter": 0}, "adapter must be a str or None, not int"),
        ({"weights": 3}, "weights must be a path (str, bytes or os.PathLike) or a list of paths, not int"),
        ({"weights": [DEFAULT_WEIGHTS, None]}, "weights[1] must be a path (str, bytes or os.PathLike), not NoneType"),
    ],
)
def test_arguments_of_the_wrong_type_raise_type_error(arguments, message):
    with pytest.raises(TypeError) as e:
        asna.Model(**arguments)
    assert str(e.value) == message


def test_arguments_of_numpy_types_are_taken():
    m = asna.Model(batch=np.int64(2), tta=np.bool_(False))
    assert m.tta is False and m._native.batch == 2


def test_weights_paths_may_be_bytes_or_path_like(crop, crop_score, tmp_path):
    for weights in [os.fsencode(DEFAULT_WEIGHTS), DEFAULT_WEIGHTS, [os.fsencode(DEFAULT_WEIGHTS)]]:
        m = asna.Model(weights)
        assert m.weights == [str(DEFAULT_WEIGHTS)]
    assert m.score(*crop) == crop_score
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        asna.Model(os.fsencode(tmp_path / "missing.safetensors"))


BAD_BACKEND = (
    'WGPU_BACKEND=bogus: unknown backend "bogus" '
    "(expected one or more of vulkan, metal, dx12, gl, comma-separated)"
)


def test_an_unknown_wgpu_backend_is_named():
    code = (
        "import asna\n"
        "for call in (asna.devices, asna.Model):\n"
        "    try:\n        call()\n"
        "    except RuntimeError as e:\n        print(e)\n"
    )
    env = dict(os.environ, WGPU_BACKEND="bogus")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [BAD_BACKEND, BAD_BACKEND]


def test_a_device_as_weights_is_refused_at_once():
    # In a child with a time limit: a reader that never stops would fill the memory.
    code = (
        "import asna\n"
        "try:\n    asna.Model('/dev/zero')\n"
        "except OSError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.startswith("/dev/zero: ") and "\n" not in message, message
