"""Reading images into model inputs and back: paths, PIL images, arrays and tensors.

Every input becomes 8-bit RGB, is resized to the model's resolution and scaled to ``[-1, 1]``.
Each of Pillow's modes is read by its real range:

- ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``HSV``: Pillow's conversion to RGB
  (grey replicated, palette looked up).
- ``I;16`` (16-bit grey, e.g. 16-bit PNG and TIFF): ``0..65535`` to ``0..255``.
- ``I`` (32-bit integer grey): by the file's bit depth when the TIFF says it (16: ``0..65535``,
  32: ``0..2**31-1`` signed or ``0..2**32-1`` unsigned); otherwise ``0..65535`` when every value
  fits in 16 bits (how 16-bit PNGs open in older Pillow), else ``0..2**31-1``. Negative values are refused.
- ``F`` (32-bit float grey, float TIFF): values must lie in ``0..1``; other ranges are refused
  (there is no way to tell what they mean), as are NaN and infinity.
- Alpha (``RGBA``, ``LA``, ``La``, ``RGBa``, ``PA``, ``P`` with transparency): composited onto a
  white background (``out = alpha * colour + (1 - alpha) * 255``): a half-transparent black
  pixel becomes grey 128; an :class:`~diffpid.errors.ImageWarning` says so once per process.
- ``LAB`` and any other mode: refused with :class:`~diffpid.errors.ImageError` (Pillow has no
  true conversion of them to RGB).

Arrays and tensors: ``uint8`` is ``0..255``, ``uint16`` is ``0..65535``, float and bool are
``0..1``. An image much smaller than the model's resolution (upscaled more than
:data:`UPSCALE_WARNING` times in a side, e.g. a 1x1 image) is resized with an ``ImageWarning``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ImageError, ImageWarning

#: upscaling by more than this factor in a side warns that the image holds little detail
UPSCALE_WARNING = 4.0

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """Warn with :class:`ImageWarning` the first time ``key`` comes up in this process."""
    import warnings

    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, ImageWarning, stacklevel=3)


ALPHA_MESSAGE = ("the image has an alpha channel: it is composited onto white (transparent pixels become white, "
                 "half-transparent ones lighter); flatten it yourself to choose another background")


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
        except ImageError:
            raise
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

    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        _warn_once("alpha", ALPHA_MESSAGE)
        if mode in ("La", "RGBa"):  # premultiplied alpha: out = colour * alpha + (1 - alpha) * white
            a = np.asarray(im).astype(np.float64)
            colour = a[..., :-1] if mode == "RGBa" else np.repeat(a[..., :1], 3, axis=-1)
            out = colour + (255.0 - a[..., -1:])
            return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("1", "L", "P", "RGBX", "CMYK", "YCbCr", "HSV"):
        return im.convert("RGB")
    if mode.startswith("I;16"):
        return Image.fromarray(_grey_u8(np.asarray(im).astype(np.float64) / 65535.0))
    if mode == "I":
        return Image.fromarray(_grey_u8(_int_grey(im)))
    if mode == "F":
        f = np.asarray(im, dtype=np.float64)
        if not np.isfinite(f).all():
            raise ImageError("the float image contains NaN or Inf values; save it as an 8- or 16-bit image")
        if f.size and (f.min() < -1e-6 or f.max() > 1 + 1e-6):
            raise ImageError(f"the float image's values span [{f.min():.4g}, {f.max():.4g}], not 0..1; scale it to "
                             "0..1 or save it as an 8- or 16-bit image")
        return Image.fromarray(_grey_u8(f))
    raise ImageError(f"images of Pillow mode {mode!r} are not supported (no true conversion to RGB); "
                     "convert it to RGB first")


def _int_grey(im) -> np.ndarray:
    """A mode ``I`` image in ``0..1``, by the file's bit depth when known (see the module docstring)."""
    a = np.asarray(im).astype(np.int64)
    tags = getattr(im, "tag_v2", None)
    bits = sample_format = None
    if tags is not None:
        b = tags.get(258)
        bits = int(b[0] if isinstance(b, tuple) else b) if b is not None else None
        f = tags.get(339)
        sample_format = int(f[0] if isinstance(f, tuple) else f) if f is not None else None
    if bits == 32 and sample_format in (None, 1):  # unsigned 32 bit, read by Pillow into int32
        return (a % 2**32).astype(np.float64) / (2**32 - 1)
    if a.size and a.min() < 0:
        raise ImageError(f"the 32-bit image has negative values (down to {a.min()}); save it as 8- or 16-bit "
                         "without negative values")
    if bits is not None and bits <= 16:
        return a.astype(np.float64) / (2**bits - 1)
    if bits is None and (not a.size or a.max() <= 65535):
        return a.astype(np.float64) / 65535.0
    return a.astype(np.float64) / (2**31 - 1)


def _grey_u8(f: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey in ``0..1`` to ``(H, W, 3)`` uint8 RGB."""
    g = np.clip(np.round(f * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def _array_rgb(a: np.ndarray) -> np.ndarray:
    """``(H, W[, C])`` array to ``(H, W, 3)`` uint8 RGB."""
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {a.shape}")
    if a.size == 0:
        raise ImageError(f"the image array is empty ({a.shape})")
    if a.dtype == np.uint8:
        f = a.astype(np.float64) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float64) / 65535.0
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == bool:
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise ImageError("the image contains NaN or Inf values")
        if f.min() < -1e-6 or f.max() > 1 + 1e-6:
            raise ImageError(f"float images must be in [0, 1], got [{f.min():.3g}, {f.max():.3g}]; pass uint8 for 0..255")
    else:
        raise ImageError(f"unsupported image dtype {a.dtype}; pass uint8 (0..255), uint16 (0..65535) or float (0..1)")
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=-1)
    if f.shape[-1] == 4:
        _warn_once("alpha", ALPHA_MESSAGE)
        alpha = np.clip(f[..., 3:], 0, 1)
        f = f[..., :3] * alpha + (1 - alpha)
    return np.clip(np.round(f * 255), 0, 255).astype(np.uint8)


def image_tensor(image: Any, size: tuple[int, int]) -> torch.Tensor:
    """An image as a ``(1, 3, H, W)`` float32 tensor in ``[-1, 1]`` at ``size = (H, W)``.

    Resized with a bicubic filter (aspect ratio not preserved; crop beforehand to keep it).
    """
    from PIL import Image

    im = to_rgb(image)
    h, w = size
    scale = max(h / im.size[1], w / im.size[0])
    if scale > UPSCALE_WARNING:
        _warn_once(f"upscale:{im.size}:{size}", f"the image is {im.size[0]}x{im.size[1]} pixels and is upscaled "
                   f"{scale:.0f}x to the model's {w}x{h}; its maps show little more than the few pixels it has")
    if im.size != (w, h):
        im = im.resize((w, h), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(n, 3, H, W)`` images in ``[-1, 1]`` to ``(n, H, W, 3)`` uint8."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()


def vae_call(vae: Any, fn: Any) -> Any:
    """Run ``fn(vae)`` without gradients, in float32 when a float16 VAE asks for it (``force_upcast``)."""
    upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        with torch.no_grad():
            return fn(vae)
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
