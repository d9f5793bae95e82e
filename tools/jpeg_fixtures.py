"""Writes the JPEG fixtures of tests/data/jpeg/: small crops of data/demo/ref.png in the
encodings a JPEG reader must walk (baseline and progressive, 4:4:4, 4:2:2, 4:2:0 and gray,
default and optimised Huffman tables, restart intervals, odd sizes).

    python tools/jpeg_fixtures.py        # needs Pillow
"""

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "jpeg"

# name: (crop width, crop height, Pillow save options)
FIXTURES = {
    "baseline-420.jpg": (61, 45, dict(quality=90, subsampling=2)),
    "baseline-422-optimized.jpg": (40, 33, dict(quality=75, subsampling=1, optimize=True)),
    "baseline-444-restart.jpg": (33, 17, dict(quality=95, subsampling=0, restart_marker_blocks=2)),
    "baseline-gray.jpg": (29, 31, dict(quality=80, mode="L")),
    "baseline-1x1.jpg": (1, 1, dict(quality=90)),
    "progressive-420.jpg": (61, 45, dict(quality=90, subsampling=2, progressive=True)),
    "progressive-444-restart.jpg": (
        35, 27, dict(quality=85, subsampling=0, progressive=True, restart_marker_blocks=3)),
    "progressive-gray.jpg": (29, 31, dict(quality=80, mode="L", progressive=True)),
    "progressive-1x1.jpg": (1, 1, dict(quality=90, progressive=True)),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    source = Image.open(ROOT / "data" / "demo" / "ref.png").convert("RGB")
    for name, (w, h, options) in FIXTURES.items():
        options = dict(options)
        img = source.crop((200, 150, 200 + w, 150 + h))
        if options.pop("mode", "RGB") == "L":
            img = img.convert("L")
        img.save(OUT / name, "JPEG", **options)
        print(name, (OUT / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
