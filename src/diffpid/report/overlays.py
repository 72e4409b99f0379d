"""Pixels of the report: a map as a raw heat map at the model's resolution (:func:`heatmap`), upsampled
bilinearly under the displayed image's outlines (:func:`overlay`), the image at its display size, and PNG
bytes / data URIs. The colours come from a :class:`~diffpid.report.maps.ColorScale`.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from .maps import ColorScale

MIN_DISPLAY = 256
"""Images whose longest side is shorter (pixels) are enlarged by an integer factor for display."""
MAX_DISPLAY = 384
"""Images whose longest side is longer (pixels) are reduced to it for display."""


def bilinear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` map to ``size = (H, W)`` with half-pixel centres.

    The same sampling as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    (edges clamped), in float64.
    """
    v = np.asarray(values, dtype=np.float64)
    h, w = v.shape
    H, W = size

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = axis(h, H)
    x0, x1, fx = axis(w, W)
    top = v[y0][:, x0] * (1 - fx) + v[y0][:, x1] * fx
    bottom = v[y1][:, x0] * (1 - fx) + v[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def display_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``(H', W')`` at which an ``(H, W, ...)`` image is shown.

    Images whose longest side is below :data:`MIN_DISPLAY` are enlarged by an integer factor
    (pixels stay sharp); above :data:`MAX_DISPLAY` they are reduced to that longest side (keeps
    the self-contained report small); others keep their size.
    """
    h, w = int(shape[0]), int(shape[1])
    longest = max(h, w)
    if longest < MIN_DISPLAY:
        k = math.ceil(MIN_DISPLAY / longest)
        return h * k, w * k
    if longest > MAX_DISPLAY:
        f = MAX_DISPLAY / longest
        return max(1, round(h * f)), max(1, round(w * f))
    return h, w


def display_image(image: np.ndarray) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 image at :func:`display_size` (nearest when enlarged, Lanczos when reduced)."""
    from PIL import Image

    img = np.asarray(image, dtype=np.uint8)
    size = display_size(img.shape)
    if size == img.shape[:2]:
        return img
    if size[0] > img.shape[0]:
        k = size[0] // img.shape[0]
        return np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def colorize(values: np.ndarray, scale: ColorScale) -> np.ndarray:
    """``(h, w)`` values as ``(h, w, 3)`` float RGB in ``[0, 1]`` on ``scale``'s colour map."""
    from matplotlib import colormaps

    rgb = colormaps[scale.colormap](scale.normalize(values))[..., :3]
    return np.where(np.isfinite(values)[..., None], rgb, 0.5)


def heatmap(values: np.ndarray, scale: ColorScale) -> np.ndarray:
    """The raw heat map: ``(h, w)`` values as ``(h, w, 3)`` uint8 colours on ``scale``, at the map's resolution.

    Non-finite values are mid grey.
    """
    return np.clip(np.round(colorize(np.asarray(values, dtype=np.float64), scale) * 255), 0, 255).astype(np.uint8)


def outlines(image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Where the image's outlines run, at ``size`` (default :func:`display_size`): ``(H', W')`` bool.

    Each colour channel with some contrast is upsampled bilinearly and cut at its mid level; a
    pixel is on an outline where the cut changes between it and a neighbour. Objects on a plain
    background get their contours; a photograph gets a coarse sketch.
    """
    img = np.asarray(image, dtype=np.float64) / 255.0
    size = display_size(img.shape) if size is None else size
    edge = np.zeros(size, dtype=bool)
    for c in range(img.shape[2]):
        ch = img[..., c]
        lo, hi = float(ch.min()), float(ch.max())
        if hi - lo < 0.2:
            continue
        above = bilinear(ch, size) > (lo + hi) / 2
        edge[:, 1:] |= above[:, 1:] != above[:, :-1]
        edge[1:, :] |= above[1:, :] != above[:-1, :]
    return edge


def outline_rgba(image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The outlines as an ``(H', W', 4)`` uint8 layer: white lines in a dark halo, transparent elsewhere.

    Laid over any heat map (light or dark colours) the lines stay visible without hiding the map.
    """
    line = outlines(image, size)
    halo = line.copy()
    halo[1:, :] |= line[:-1, :]
    halo[:-1, :] |= line[1:, :]
    halo[:, 1:] |= line[:, :-1]
    halo[:, :-1] |= line[:, 1:]
    out = np.zeros((*line.shape, 4), dtype=np.uint8)
    out[halo] = (0, 0, 0, 140)
    out[line] = (255, 255, 255, 220)
    return out


def overlay(image: np.ndarray, values: np.ndarray, scale: ColorScale, layer: np.ndarray | None = None) -> np.ndarray:
    """A map with the image's outlines over it; the map stays dominant.

    The map is upsampled bilinearly to the displayed image (:func:`display_size`), coloured on
    ``scale``, and the outline layer (:func:`outline_rgba`) is composited on top.

    Args:
        image: ``(H, W, 3)`` uint8 image.
        values: ``(h, w)`` map.
        scale: its colour scale.
        layer: the image's :func:`outline_rgba` when already computed (one per image).

    Returns:
        ``(H', W', 3)`` uint8 overlay at :func:`display_size` of the image.
    """
    size = display_size(np.asarray(image).shape)
    base = colorize(bilinear(values, size), scale)
    layer = (outline_rgba(image, size) if layer is None else layer).astype(np.float64) / 255.0
    a = layer[..., 3:]
    out = base * (1 - a) + layer[..., :3] * a
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A ``(H, W, 3)`` (or ``(H, W, 4)``) uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="PNG", optimize=arr.shape[0] * arr.shape[1] <= 128 * 128)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
