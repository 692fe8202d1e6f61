"""Procedural clean images: gradients, textures, noise, text, flat graphics, screenshot-like."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS: tuple[str, ...] = ("gradient", "texture", "noise", "text", "flat", "screenshot")
_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "report", "quarterly", "revenue", "meeting", "agenda", "invoice", "total", "server", "status", "healthy", "latency", "error", "retry", "config", "user", "login", "session", "token", "window", "button", "file", "edit", "view", "help", "open", "save", "close", "search", "results", "page", "next", "previous", "settings", "account", "profile"]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def sentence(rng: np.random.Generator, words: int) -> str:
    """A random sentence from a small vocabulary."""
    return " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), words))


def gradient(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    a, b = np.asarray(_colour(rng), float), np.asarray(_colour(rng), float)
    yy, xx = np.mgrid[0:h, 0:w]
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / (abs(w * np.cos(angle)) + abs(h * np.sin(angle)) + 1e-9)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xx - cx, yy - cy) / np.hypot(w, h)
    t = np.clip(t - t.min(), 0, 1)[..., None]
    img = a * (1 - t) + b * t + rng.normal(0, rng.uniform(0, 3), (h, w, 1))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def texture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    cells = int(rng.integers(3, 24))
    grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    base = Image.fromarray(grid, "RGB").resize(size, Image.Resampling.BICUBIC)
    yy, xx = np.mgrid[0:h, 0:w]
    waves = 30 * np.sin(xx * rng.uniform(0.02, 0.3) + yy * rng.uniform(0.02, 0.3))[..., None]
    img = np.asarray(base, float) + waves
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def noise(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    sigma = rng.uniform(5, 60)
    img = rng.normal(rng.uniform(60, 200), sigma, (h, w, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return im.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def text(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    bg = (255, 255, 255) if rng.random() < 0.6 else _colour(rng)
    im = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(im)
    font_size = int(rng.integers(9, 22))
    font = _font(font_size)
    y = int(rng.integers(2, 12))
    ink = (0, 0, 0) if bg == (255, 255, 255) else _colour(rng)
    while y < h - font_size:
        draw.text((int(rng.integers(2, 16)), y), sentence(rng, int(rng.integers(3, 10))), fill=ink, font=font)
        y += int(font_size * rng.uniform(1.2, 1.8))
    return im


def flat(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, _colour(rng))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 15))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
        shape = int(rng.integers(3))
        if shape == 0:
            draw.rectangle((x0, y0, x1, y1), fill=_colour(rng))
        elif shape == 1:
            draw.ellipse((x0, y0, x1, y1), fill=_colour(rng))
        else:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            draw.polygon(points, fill=_colour(rng))
    return im


def screenshot(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, (240, 240, 240) if rng.random() < 0.7 else (40, 42, 54))
    dark = im.getpixel((0, 0))[0] < 128  # type: ignore[index]
    draw = ImageDraw.Draw(im)
    bar = _colour(rng)
    draw.rectangle((0, 0, w, 18), fill=bar)
    for i in range(3):
        draw.ellipse((6 + 14 * i, 5, 14 + 14 * i, 13), fill=_colour(rng))
    side = int(w * rng.uniform(0.15, 0.3))
    draw.rectangle((0, 19, side, h), fill=(220, 220, 225) if not dark else (30, 30, 40))
    font = _font(11)
    ink = (20, 20, 20) if not dark else (220, 220, 220)
    y = 26
    while y < h - 12:
        draw.text((side + 8, y), sentence(rng, int(rng.integers(2, 7))), fill=ink, font=font)
        if rng.random() < 0.15:
            draw.rounded_rectangle((side + 8, y + 14, side + 70, y + 30), 4, fill=_colour(rng))
            y += 20
        y += 16
    return im


_MAKERS = {"gradient": gradient, "texture": texture, "noise": noise, "text": text, "flat": flat, "screenshot": screenshot}


def procedural(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Make one procedural RGB image of ``kind`` (one of :data:`KINDS`) at ``size``."""
    return _MAKERS[kind](rng, size)
