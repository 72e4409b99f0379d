"""Reading images into model inputs and back: paths, PIL images, arrays and tensors.

Every input becomes RGB (grayscale replicated, alpha composited on white, palette
images converted), is resized to the model's resolution and scaled to ``[-1, 1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ImageError


def to_rgb(image: Any):
    """Any supported image as an RGB ``PIL.Image``.

    Args:
        image: a path (str or ``Path``); a ``PIL.Image`` in any mode; a numpy array
            ``(H, W)``, ``(H, W, 1|3|4)`` (uint8 in 0..255 or float in 0..1); or a tensor
            ``(C, H, W)`` / ``(1, C, H, W)`` with ``C`` in 1, 3, 4 (uint8, or float in 0..1).

    Raises:
        ImageError: the file cannot be read or the array has an unsupported shape or dtype.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                im.load()
                return _pil_rgb(im)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise ImageError(f"cannot read the image {str(image)!r} ({type(err).__name__}); pass a PNG/JPEG file") from err
    if isinstance(image, Image.Image):
        return _pil_rgb(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise ImageError(f"an image tensor must be (C, H, W) or (1, C, H, W) with C in 1, 3, 4; got {tuple(image.shape)}")
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        return Image.fromarray(_array_rgb(image))
    raise ImageError(f"unsupported image type {type(image).__name__}; pass a path, PIL image, numpy array or tensor")


def _pil_rgb(im):
    from PIL import Image

    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _array_rgb(a: np.ndarray) -> np.ndarray:
    """``(H, W[, C])`` array to ``(H, W, 3)`` uint8 RGB."""
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float64) / 255.0
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == bool:
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise ImageError("the image contains NaN or Inf values")
        if f.min() < -1e-6 or f.max() > 1 + 1e-6:
            raise ImageError(f"float images must be in [0, 1], got [{f.min():.3g}, {f.max():.3g}]; pass uint8 for 0..255")
    else:
        raise ImageError(f"unsupported image dtype {a.dtype}; pass uint8 (0..255) or float (0..1)")
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=-1)
    if f.shape[-1] == 4:
        alpha = f[..., 3:]
        f = f[..., :3] * alpha + (1 - alpha)
    return np.clip(np.round(f * 255), 0, 255).astype(np.uint8)


def image_tensor(image: Any, size: tuple[int, int]) -> torch.Tensor:
    """An image as a ``(1, 3, H, W)`` float32 tensor in ``[-1, 1]`` at ``size = (H, W)``.

    Resized with a bicubic filter (aspect ratio not preserved; crop beforehand to keep it).
    """
    from PIL import Image

    im = to_rgb(image)
    h, w = size
    if im.size != (w, h):
        im = im.resize((w, h), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(n, 3, H, W)`` images in ``[-1, 1]`` to ``(n, H, W, 3)`` uint8."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()
