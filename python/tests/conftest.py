"""Shared fixtures: the repository's demo pair, a 288x288 crop of it (one window, so that GPU
tests stay fast on lavapipe), one model for the whole session, and the command-line binary
whose scores and messages the package must reproduce."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import asna

REPO = Path(__file__).resolve().parents[2]
DEMO_REF = REPO / "data" / "demo" / "ref.png"
DEMO_DIST = REPO / "data" / "demo" / "dist.png"
# The crop's origin: a window with texture and edges, where the distortion shows.
CROP_Y, CROP_X = 112, 240


def cli_path():
    """The `asna` binary (ASNA_CLI, or target/release/asna), or None when it is not built."""
    path = Path(os.environ.get("ASNA_CLI", REPO / "target" / "release" / "asna"))
    return path if path.is_file() else None


def require_cli():
    """The `asna` binary; a failure, not a skip, when it is missing: the package's answers
    are checked against the binary's."""
    cli = cli_path()
    if cli is None:
        pytest.fail("the asna command-line binary is not built (cargo build --release, or set ASNA_CLI)")
    return cli


def run_cli(*args, cwd=None):
    cli = require_cli()
    # A backtrace would follow the one-line message.
    env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
    return subprocess.run(
        [str(cli), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env
    )


def cli_error(*args):
    """The one-line message of a failing `asna score` run, without its "error: " prefix."""
    result = run_cli("score", *args)
    assert result.returncode != 0, result.stdout
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr
    return line[len("error: "):]


@pytest.fixture(scope="session")
def model():
    return asna.Model()


@pytest.fixture(scope="session")
def crop():
    """(reference, distorted) 288x288x3 uint8 arrays cut from the demo pair."""
    window = (slice(CROP_Y, CROP_Y + 288), slice(CROP_X, CROP_X + 288))
    return asna.to_rgb(DEMO_REF)[window], asna.to_rgb(DEMO_DIST)[window]


@pytest.fixture(scope="session")
def crop_score(model, crop):
    return model.score(*crop)


@pytest.fixture(scope="session")
def files(tmp_path_factory, crop):
    """A folder with the demo pair, the crop as PNG files, and a pair list of both."""
    from PIL import Image
    folder = tmp_path_factory.mktemp("pairs")
    shutil.copy(DEMO_REF, folder / "ref.png")
    shutil.copy(DEMO_DIST, folder / "dist.png")
    Image.fromarray(crop[0]).save(folder / "crop_ref.png")
    Image.fromarray(crop[1]).save(folder / "crop_dist.png")
    Image.fromarray(crop[0][:100, :100]).save(folder / "small.png")
    (folder / "list.csv").write_text("ref,dist\nref.png,dist.png\ncrop_ref.png,crop_dist.png\n")
    return folder


@pytest.fixture(scope="session")
def cli_scores(files):
    """Full-precision scores of the pair list by `asna score --pairs`, by distorted file name."""
    result = run_cli("score", "--pairs", files / "list.csv", "--format", "json", "--quiet")
    assert result.returncode == 0, result.stderr
    return {Path(row["dist"]).name: row["score"] for row in json.loads(result.stdout)}
