"""ASNA perceptual image quality: full-reference scores of distorted images against their
references, computed by asna's WGSL compute shaders on any GPU that wgpu reaches (Vulkan,
Metal, DX12, or Mesa's lavapipe on machines with no GPU). No torch, no CUDA.

    >>> import asna
    >>> m = asna.Model()                       # embedded default model, best adapter
    >>> m.score("ref.png", "dist.png")         # paths, PIL images or HxWx3 arrays
    3.7397...

Scores are those of ``asna score`` for the same pair and weights, on the scale of the labels
the model was trained on; higher is better (``Model.lower_better`` is False).
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _asna

__all__ = ["Model", "devices", "to_rgb", "WINDOW", "__version__"]
__version__: str = _asna.__version__

#: Side of the model's square input; smaller images are refused, larger ones are covered by
#: WINDOW x WINDOW windows whose scores are averaged.
WINDOW: int = _asna.WINDOW

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: A path, a PIL image, or an HxWx3 / HxWx4 / HxW array (uint8 0-255, uint16 0-65535, float 0-1).
Image = Union[str, "os.PathLike[str]", np.ndarray, Any]

# PIL modes whose pixels numpy reads as asna's conversions expect (I;16: 0-65535, as a 16-bit
# PNG file reads); others except the refused ones go through RGB.
_PIL_DIRECT_MODES = ("RGB", "RGBA", "L", "LA", "I;16", "I;16L", "I;16B")
# PIL modes whose value range is not known: 32-bit integers and floats hold 0-255 as often as
# 0-65535 or 0-1, and a guess would give a wrong score without a word.
_PIL_AMBIGUOUS_MODES = {
    "I": 'image.convert("RGB") for 0-255 values, np.asarray(image).astype(np.uint16) for 0-65535',
    "F": "np.asarray(image) / 255 for 0-255 values, np.asarray(image) for 0-1",
}


def devices() -> List[dict]:
    """Every GPU adapter wgpu can reach, in the order ``asna devices`` lists them, as dicts with
    ``name``, ``backend``, ``type``, ``driver``, ``features`` (the optional features asna uses
    that the adapter offers) and its limits, as ``asna devices --json`` prints them. Empty
    when there is none (``Model()`` then raises RuntimeError saying how to get one).
    Raises RuntimeError when ``WGPU_BACKEND`` names no backend asna is built with."""
    return json.loads(_asna.devices_json())


def _is_pil_image(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "mode")


def _pil_to_array(image: Any, name: str) -> np.ndarray:
    mode = image.mode
    if mode in _PIL_AMBIGUOUS_MODES:
        raise ValueError(
            f'{name}: PIL image of mode "{mode}" has no fixed value range; convert it first: '
            f"{_PIL_AMBIGUOUS_MODES[mode]}"
        )
    if mode not in _PIL_DIRECT_MODES:
        # Palette, bilevel, CMYK, YCbCr...: their RGB colours, as a file decoder gives them.
        image = image.convert("RGB")
    return np.asarray(image)


def _input(image: Image, name: str) -> Union[str, Tuple[str, bytes, Tuple[int, ...], str]]:
    """What the native module reads: a path, or (name, C-order native-endian bytes, shape,
    numpy type name). Checks of shape, type and values are the library's."""
    if isinstance(image, (str, os.PathLike)):
        return os.fsdecode(image)
    if isinstance(image, bytes):
        raise TypeError(f"{name}: pass a path as str or os.PathLike, not bytes")
    array = _pil_to_array(image, name) if _is_pil_image(image) else np.asarray(image)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    array = np.ascontiguousarray(array)
    return (name, array.tobytes(), tuple(array.shape), array.dtype.name)


def to_rgb(image: Image) -> np.ndarray:
    """The HxWx3 uint8 RGB pixels the model scores for ``image``: a file read as ``asna
    score`` reads it (EXIF orientation applied), or a PIL image or array converted (gray
    replicated, alpha dropped, 16-bit rounded ``v / 257``, float ``round(v * 255)``).
    Raises the errors ``Model.score`` raises for one image."""
    data, height, width = _asna.rgb_pixels(_input(image, "image"))
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).copy()


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, bytes, os.PathLike))


def _paths(weights: Union[None, PathLike, Sequence[PathLike]]) -> List[str]:
    if weights is None:
        return []
    if _is_path(weights):
        return [os.fsdecode(weights)]
    if not isinstance(weights, (list, tuple)):
        raise TypeError(
            "weights must be a path (str, bytes or os.PathLike) or a list of paths, "
            f"not {type(weights).__name__}"
        )
    for i, w in enumerate(weights):
        if not _is_path(w):
            raise TypeError(
                f"weights[{i}] must be a path (str, bytes or os.PathLike), not {type(w).__name__}"
            )
    return [os.fsdecode(w) for w in weights]


def _check_type(value: Any, name: str, kinds: tuple, expected: str) -> None:
    # bool is an int to Python, but True is no batch size.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")


class Model:
    """The ASNA image quality model on a GPU, ready to score pairs of images.

    Args:
        weights: None for the model embedded in the package; the path (str, bytes or
            os.PathLike) of a ``.safetensors`` model file or of a training run directory
            (its ``best.safetensors``); or a list of them, whose scores are averaged as an
            ensemble (on the first model's label scale), as ``asna score --weights A
            --weights B`` does.
        adapter: use the first GPU adapter whose name contains this text (case-insensitive),
            as ``--adapter``; None takes the best one (discrete, integrated, virtual, other,
            then CPU such as lavapipe), honouring ``WGPU_ADAPTER_NAME``, ``WGPU_BACKEND`` and
            ``WGPU_POWER_PREF``.
        precision: "f32", or "f16" to store activations and weights in f16 (adapters with
            shader-f16; scores then stay within about 0.01 of f32).
        tta: average each pair's score over the test-time variants (rotations, flips,
            lightness scales), as ``--tta``.
        batch: 288x288 windows per GPU batch, capped by the adapter's largest binding.

    Images, wherever a method takes one, are paths (PNG, JPEG, BMP, read as ``asna score``
    reads them), PIL images, or arrays: HxWx3 RGB, HxWx4 RGBA (alpha dropped), HxW or HxWx1
    gray (replicated), of uint8 (0-255), uint16 (0-65535, rounded to 8 bits) or float
    (0-1, as pyiqa and piq take them; rounded to 8 bits), in any memory layout. PIL images
    of 16-bit mode ``I;16`` read as uint16; modes ``I`` and ``F``, whose value range is
    unknown, are refused (ValueError saying how to convert them). Reference and distorted
    image must have the same size, at least 288x288; larger images are covered by 288x288
    windows whose scores are averaged.

    Raises:
        TypeError: an argument of the wrong type (``batch=2.7``, ``tta="no"``).
        RuntimeError: no GPU adapter (the message says how to get one), none whose name
            contains ``adapter``, or a ``WGPU_BACKEND`` that names no known backend.
        ValueError: an unknown precision, or f16 on an adapter without shader-f16.
        FileNotFoundError: a weights file that does not exist.
        OSError: a weights file that is not an asna model.

    The GPU works with the GIL released, so other Python threads run meanwhile; one model
    may be used from several threads (their requests take turns on the GPU). Ctrl-C
    interrupts any call promptly, however large its images. A model belongs to the process
    that created it: in a child made by ``fork`` (multiprocessing's default start method on
    Linux) its methods raise RuntimeError; create the model in the child, or use the
    ``spawn`` start method.
    """

    #: Higher scores mean better quality, as pyiqa's metrics say it.
    lower_better: bool = False

    def __init__(
        self,
        weights: Union[None, PathLike, Sequence[PathLike]] = None,
        *,
        adapter: Optional[str] = None,
        precision: str = "f32",
        tta: bool = False,
        batch: int = 16,
    ) -> None:
        _check_type(adapter, "adapter", (str, type(None)), "a str or None")
        _check_type(precision, "precision", (str,), 'a str ("f32" or "f16")')
        _check_type(tta, "tta", (bool, np.bool_), "a bool (True or False)")
        _check_type(batch, "batch", (numbers.Integral,), "an int")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self._native = _asna.NativeModel(_paths(weights), adapter, precision, bool(tta), int(batch))
        self.precision = precision
        self.tta = bool(tta)

    @property
    def adapter(self) -> str:
        """The adapter the model runs on: name, backend, type and driver."""
        return self._native.adapter

    @property
    def weights(self) -> List[str]:
        """Where each model of the ensemble came from (a path, or the embedded default)."""
        return list(self._native.weights)

    def score(self, ref: Image, dist: Image) -> float:
        """The quality of ``dist`` against its reference ``ref``: the number ``asna score REF
        DIST`` prints (before its rounding to 4 decimals).

        Raises:
            ValueError: an array of the wrong shape or type, float values outside [0, 1],
                images of different sizes or smaller than 288x288.
            FileNotFoundError: a path that does not exist.
            OSError: a file that is not a readable PNG, JPEG, WebP, TIFF or BMP image.
        """
        return self._native.score_pairs(iter([(_input(ref, "ref"), _input(dist, "dist"))]))[0]

    def score_batch(self, refs: Iterable[Image], dists: Iterable[Image]) -> np.ndarray:
        """Scores of many pairs ``(refs[i], dists[i])`` as a float64 array, batched on the GPU
        as ``asna score --pairs`` batches them (each score equal to ``score`` of its pair).
        Inputs are read a few batches ahead of the GPU, so iterables of paths may be long.

        Raises the errors of ``score``, naming the pair's files, or ``refs[i]`` / ``dists[i]``
        for arrays; ValueError when the two differ in length.
        """
        refs = refs if hasattr(refs, "__len__") else list(refs)
        dists = dists if hasattr(dists, "__len__") else list(dists)
        if len(refs) != len(dists):  # type: ignore[arg-type]
            raise ValueError(f"refs and dists differ in length ({len(refs)} and {len(dists)})")  # type: ignore[arg-type]

        def pairs() -> Iterator[tuple]:
            for i, (r, d) in enumerate(zip(refs, dists)):
                yield _input(r, f"refs[{i}]"), _input(d, f"dists[{i}]")

        return np.asarray(self._native.score_pairs(pairs()), dtype=np.float64)

    def quality_map(self, ref: Image, dist: Image) -> np.ndarray:
        """Where the model sees degradation: an HxW float32 array at the image's size, the
        channel mean of the first encoder scale's feature difference ``|y1(ref) - y1(dist)|``
        averaged where windows overlap (the values ``asna score --map`` draws). The first
        model of an ensemble, without test-time variants. Raises the errors of ``score``."""
        data, height, width = self._native.quality_map(_input(ref, "ref"), _input(dist, "dist"))
        return np.frombuffer(data, dtype=np.float32).reshape(height, width).copy()

    def __repr__(self) -> str:
        return (
            f"asna.Model(weights={self.weights!r}, adapter={self.adapter!r}, "
            f"precision={self.precision!r}, tta={self.tta!r})"
        )
