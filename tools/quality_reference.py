"""Reference values of MS-SSIM and GMSD from piq for the fixture pairs of tests/ops/quality.rs.

Usage: python3 tools/quality_reference.py   (needs torch, piq, numpy and pillow, CPU is enough)

The pairs are built exactly as `fixture_pairs` in tests/ops/quality.rs builds them: crops of the
demo pair (data/demo/) at awkward sizes, with integer-formula distortions (hashed noise, a 3x3
box blur, posterisation). piq runs in float64 on the 0..255 scale (data_range 255):
- MS-SSIM: `piq.multi_scale_ssim` on the luma 0.299 R + 0.587 G + 0.114 B as one channel
  (on three channels piq would average per-channel MS-SSIM instead);
- GMSD: `piq.gmsd` on RGB, which takes the Y of YIQ (the same weights) itself.
Prints the Rust constants the test holds.
"""
import os
import numpy as np
import piq
import torch
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load(name):
    return np.asarray(Image.open(os.path.join(ROOT, "data", "demo", name)).convert("RGB")).astype(np.int64)


def noise(img):
    h, w, _ = img.shape
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    hsh = ((x * 7919 + y * 104729 + c * 31337) * 2654435761) & 0xFFFFFFFF
    return np.clip(img + (hsh >> 27) - 16, 0, 255)


def box_blur(img):
    h, w, _ = img.shape
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    s = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    return (s + 4) // 9


def posterise(img):
    return (img & 0xF0) | 0x08


def fixture_pairs():
    ref, dist = load("ref.png"), load("dist.png")
    crop = lambda img, y, x, h, w: img[y:y + h, x:x + w]
    return [
        ("demo 512x768", ref, dist),
        ("noise 161x161", crop(ref, 0, 0, 161, 161), noise(crop(ref, 0, 0, 161, 161))),
        ("blur 175x203", crop(ref, 40, 30, 175, 203), box_blur(crop(ref, 40, 30, 175, 203))),
        ("posterised 170x161", crop(ref, 7, 100, 170, 161), posterise(crop(ref, 7, 100, 170, 161))),
        ("demo crop 199x168", crop(ref, 1, 3, 199, 168), crop(dist, 1, 3, 199, 168)),
        ("noise 13x9", crop(ref, 100, 100, 13, 9), noise(crop(ref, 100, 100, 13, 9))),
    ]


def tensor(img):
    return torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None]


def luma(t):
    return 0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3]


print(f"// piq {piq.__version__}, torch {torch.__version__}, float64: (name, MS-SSIM, GMSD)")
for name, a, b in fixture_pairs():
    x, y = tensor(a), tensor(b)
    h, w = a.shape[:2]
    ms = piq.multi_scale_ssim(luma(x), luma(y), data_range=255.0).item() if min(h, w) >= 161 else float("nan")
    g = piq.gmsd(x, y, data_range=255.0).item()
    ms_text = "f64::NAN" if np.isnan(ms) else f"{ms:.12}"
    print(f'("{name}", {ms_text}, {g:.12}),')
