"""A ``UNet2DConditionModel`` that sees where each pixel is (CoordConv input channels).

A UNet's convolutions and self-attention carry no absolute position: what they know of
"left" comes from the zero padding at the border, which is faint at high noise, when the
layout is decided. A caption such as "a red circle left of a blue box" needs the pixels on
the left to ask for the first object; with the pixel's x and y among its input features
the cross-attention query can say where it is from the first layer on.

:class:`CoordUNet2DConditionModel` is diffusers' ``UNet2DConditionModel`` with one change:
its ``conv_in`` is a :class:`CoordConv2d` that appends two channels, x and y in [-1, 1],
to the input before the convolution. Its config is the base class's (``in_channels`` is
still the data's channel count), so ``save_pretrained`` / ``from_pretrained`` work as
usual; a component folder names it as ``["diffpid", "CoordUNet2DConditionModel"]`` in
``model_index.json`` and :func:`diffpid.models.loading.load_model` builds it.
"""

from __future__ import annotations

import functools

import torch
from diffusers import UNet2DConditionModel

COORDINATE_CHANNELS = 2


class CoordConv2d(torch.nn.Conv2d):
    """``Conv2d`` over the input with x and y coordinate channels appended (``in_channels``
    counts them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)])
        return super().forward(torch.cat([x, grid.expand(n, -1, -1, -1)], 1))


class CoordUNet2DConditionModel(UNet2DConditionModel):
    """``UNet2DConditionModel`` whose first convolution also reads the pixel coordinates."""

    @functools.wraps(UNet2DConditionModel.__init__)  # keeps the base signature for the config machinery
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        old = self.conv_in
        self.conv_in = CoordConv2d(old.in_channels + COORDINATE_CHANNELS, old.out_channels, old.kernel_size,
                                   padding=old.padding)


def add_text_embedding(state: dict[str, torch.Tensor], target: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict without a pooled-text embedding (``add_embedding.*``) made loadable into
    ``target``, which has one: its fresh weights are kept, with the output LayerNorm's scale
    and shift at zero, so the new path adds exactly nothing to the timestep embedding until
    training grows it."""
    want = target.state_dict()
    extra = {k: v for k, v in want.items() if k.startswith("add_embedding.") and k not in state}
    if not extra:
        return state
    for k in ("add_embedding.norm2.weight", "add_embedding.norm2.bias"):
        if k in extra:
            extra[k] = torch.zeros_like(extra[k])
    return {**state, **extra}


def widen_conv_in(state: dict[str, torch.Tensor], target: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A plain UNet's state dict made loadable into ``target`` whose ``conv_in`` has more input
    channels: the extra (coordinate) input weights start at zero, so the widened model computes
    exactly what the plain one did."""
    want = target.state_dict()["conv_in.weight"]
    have = state["conv_in.weight"]
    if have.shape == want.shape:
        return state
    if have.shape[0] != want.shape[0] or have.shape[1] > want.shape[1] or have.shape[2:] != want.shape[2:]:
        return state  # let load_state_dict report the mismatch
    wide = torch.zeros_like(want)
    wide[:, : have.shape[1]] = have
    return {**state, "conv_in.weight": wide}
