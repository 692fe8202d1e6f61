"""Clean image sources: photographs shipped inside installed packages, nothing downloaded.

scikit-image bundles a few sample photographs in its wheel (the rest of ``skimage.data`` is
fetched over the network by pooch and is never used here); scikit-learn, when installed,
bundles two more. Files are read directly from the package directories.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: scikit-image sample files that are photographs (or photo-like scans), bundled in the wheel.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
    "retina.jpg", "rocket.jpg", "text.png",
)
#: Bundled images with a natural alpha channel.
SKIMAGE_ALPHA: tuple[str, ...] = ("logo.png", "horse.png")
#: scikit-learn sample photographs (``sklearn/datasets/images``), used when scikit-learn is installed.
SKLEARN_PHOTOS: tuple[str, ...] = ("china.jpg", "flower.jpg")


@dataclass(frozen=True)
class Photo:
    """One bundled photograph: a name for the manifest and its decoded pixels."""

    name: str
    image: Image.Image


def _package_dir(package: str, sub: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _load(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGBA" if im.mode in ("RGBA", "LA", "PA") else ("L" if im.mode == "L" else "RGB"))
    except OSError:
        return None


@functools.cache
def photos() -> tuple[Photo, ...]:
    """Return every bundled photograph available offline (cached per process)."""
    found: list[Photo] = []
    for package, sub, names in (("skimage", "data", SKIMAGE_PHOTOS), ("sklearn", "datasets/images", SKLEARN_PHOTOS)):
        base = _package_dir(package, sub)
        if base is None:
            continue
        for name in names:
            path = base / name
            if path.is_file() and (im := _load(path)) is not None:
                found.append(Photo(f"{package}:{name}", im))
    return tuple(found)


@functools.cache
def alpha_images() -> tuple[Photo, ...]:
    """Return bundled images that have a natural alpha channel."""
    base = _package_dir("skimage", "data")
    out = []
    for name in SKIMAGE_ALPHA:
        if base is not None and (base / name).is_file() and (im := _load(base / name)) is not None:
            out.append(Photo(f"skimage:{name}", im))
    return tuple(out)


def random_view(photo: Image.Image, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A random crop of ``photo`` rescaled to ``size`` (width, height)."""
    width, height = photo.size
    aspect = size[0] / size[1]
    scale = rng.uniform(0.35, 1.0)
    crop_w = max(8, int(min(width, height * aspect) * scale))
    crop_h = max(8, int(crop_w / aspect))
    crop_w, crop_h = min(crop_w, width), min(crop_h, height)
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
    resample = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)[int(rng.integers(3))]
    view = photo.crop((x, y, x + crop_w, y + crop_h)).resize(size, resample)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return view
