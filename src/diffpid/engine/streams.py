"""Counter-based random numbers in torch integer ops: the same numbers on any device, in any chunking.

Every random number of the engine is a pure function of ``(seed, stream, image, sample, element)``:
a splitmix64 hash of the counter (Steele, Lea and Flood 2014, the finaliser of Java's
``SplittableRandom``), computed elementwise with 64-bit integer tensors on the model's device.
An image's draw number ``n`` is therefore the same whether it is drawn alone, in a batch of
40,000 images, in chunks of 3 or of 3,000, in the first round of a precision target or in
the fifth, on the CPU or on a GPU. No generator state is carried between calls and
nothing is synchronised with the host.

- :func:`uniform` gives ``(0, 1)`` uniforms from 24-bit halves of the hash (exact in float32),
- :func:`normal` gives standard normals by Box-Muller from the two halves of one hash,
- :func:`van_der_corput` gives the randomly shifted base-2 radical inverse of the sample
  index (the first dimension of a Sobol sequence), stratified at every power of two.

torch's 64-bit integer multiply wraps modulo ``2**64`` (two's complement) and its right shift
is arithmetic, so logical shifts mask the sign bits; ``tests/test_streams.py`` checks the
hash bitwise against a pure-Python splitmix64.
"""

from __future__ import annotations

import math

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB

#: stream tags: independent families of numbers for the same (image, sample)
LEVEL, NOISE, SHIFT = 1, 2, 3


def _signed(c: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    c &= _MASK64
    return c - (1 << 64) if c >= 1 << 63 else c


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 step on int64 tensors: ``x + golden`` then the finaliser (bijective)."""
    z = x + _signed(_GOLDEN)
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def mix_int(x: int) -> int:
    """:func:`mix` of one Python integer (the reference the tensor version is tested against)."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def key(seed: int, stream: int, image: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """The hashed counter of ``(seed, stream, image, sample)``: int64, the shape of ``image`` and ``sample``."""
    base = _signed(mix_int(mix_int(int(seed) & _MASK64) ^ stream))
    return mix(mix(image.long() ^ base) ^ sample.long())


def _halves(h: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uniforms in ``(0, 1)`` from the top and the middle 24 bits of a hash (exact in float32)."""
    hi = _shr(h, 40).to(dtype)
    mid = (_shr(h, 16) & 0xFFFFFF).to(dtype)
    scale = 2.0 ** -24
    return (hi + 0.5) * scale, (mid + 0.5) * scale


def uniform(seed: int, stream: int, image: torch.Tensor, sample: torch.Tensor,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One ``(0, 1)`` uniform per ``(image, sample)`` pair, 48 bits of resolution where ``dtype`` holds them."""
    h = key(seed, stream, image, sample)
    if dtype == torch.float64:
        return (_shr(h, 12).double() + 0.5) * 2.0 ** -52
    return _halves(h, dtype)[0]


def normal(seed: int, image: torch.Tensor, sample: torch.Tensor, d: int,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, d)`` standard normals: element ``j`` of pair ``(image, sample)`` from the hash of its counter.

    Box-Muller on the two 24-bit halves of one hash; the largest value is ``sqrt(2 ln 2**25) = 5.9``.
    """
    k = key(seed, NOISE, image, sample)  # (n,)
    h = mix(k[:, None] ^ torch.arange(d, device=k.device, dtype=torch.long)[None])  # (n, d)
    u1, u2 = _halves(h, torch.float32)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2 * math.pi) * u2)
    return z.to(dtype)


def _reverse32(v: torch.Tensor) -> torch.Tensor:
    """Reverse the low 32 bits of int64 values."""
    v = ((v >> 1) & 0x55555555) | ((v & 0x55555555) << 1)
    v = ((v >> 2) & 0x33333333) | ((v & 0x33333333) << 2)
    v = ((v >> 4) & 0x0F0F0F0F) | ((v & 0x0F0F0F0F) << 4)
    v = ((v >> 8) & 0x00FF00FF) | ((v & 0x00FF00FF) << 8)
    return ((v >> 16) & 0xFFFF) | ((v & 0xFFFF) << 16)


def van_der_corput(seed: int, stream: int, image: torch.Tensor, index: torch.Tensor,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Randomly shifted base-2 radical inverse of ``index`` per image, in ``(0, 1)``.

    Points ``0 .. 2**j - 1`` of one image fall one in each interval of width ``2**-j`` (shifted
    mod 1 by the image's random shift), so the levels are stratified for every prefix that is
    a power of two; each point alone is uniform, so estimates stay unbiased.
    """
    shift = _shr(key(seed, SHIFT + stream, image, torch.zeros_like(index)), 32)  # 32 random bits per image
    v = (_reverse32(index.long() & 0xFFFFFFFF) + shift) & 0xFFFFFFFF
    if dtype != torch.float64:  # 24 bits are exact in float32
        return ((v >> 8).to(dtype) + 0.5) * 2.0 ** -24
    return (v.to(dtype) + 0.5) * 2.0 ** -32
