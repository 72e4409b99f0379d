"""The images of a report, rendered once and shared by ``report.html``, the PNG files and notebooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import figures
from .maps import ColorScale, ReportMap, color_scales, own_scale, report_maps, shared_scale
from .overlays import display_image, heatmap, outline_rgba, overlay, png_bytes


@dataclass(frozen=True)
class MapImage:
    """One map with its two colour scales and pictures.

    Args:
        map: the map.
        own, shared: its own colour scale and its group's shared one.
        raw_own, raw_shared: the raw heat map at the model's resolution on each scale, PNG bytes.
        png: the overlay (the map upsampled to the image, its outlines on top) on the own scale, PNG bytes.
    """

    map: ReportMap
    own: ColorScale
    shared: ColorScale
    raw_own: bytes
    raw_shared: bytes
    png: bytes

    @property
    def scale(self) -> ColorScale:
        """The scale of the default view (the map's own)."""
        return self.own


@dataclass(frozen=True)
class ReportAssets:
    """Every image of a report.

    Args:
        image_png: the analysed image (enlarged for display when small), PNG bytes.
        outline_png: the image's outlines as a transparent layer at the display size, PNG bytes.
        maps: one :class:`MapImage` per map, in report order.
        scales: the shared colour scale of every group present.
        colorbars: ``(group, png bytes)`` of every shared scale's colour bar.
        curves_png: the noise-level curves (:func:`diffpid.report.figures.plot_curves`).
    """

    image_png: bytes
    outline_png: bytes
    maps: tuple[MapImage, ...]
    scales: tuple[ColorScale, ...]
    colorbars: tuple[tuple[str, bytes], ...]
    curves_png: bytes

    def colorbar(self, group: str) -> bytes:
        """The colour bar PNG of ``group``'s shared scale."""
        return dict(self.colorbars)[group]


def map_images(expl: Any, maps: tuple[ReportMap, ...] | None = None, overlays: bool = True) -> tuple[MapImage, ...]:
    """Both scales and pictures of every map (``overlays=False`` skips the display-size overlay PNGs)."""
    maps = report_maps(expl) if maps is None else maps
    layer = outline_rgba(expl.image) if overlays else None
    out = []
    for m in maps:
        own, shared = own_scale(m), shared_scale(m, maps)
        out.append(MapImage(m, own, shared, png_bytes(heatmap(m.values, own)), png_bytes(heatmap(m.values, shared)),
                            png_bytes(overlay(expl.image, m.values, own, layer)) if overlays else b""))
    return tuple(out)


def build_assets(expl: Any, overlays: bool = True, curves: bool = True) -> ReportAssets:
    """Render the maps, outlines, colour bars, image and curves of an explanation.

    ``overlays=False`` and ``curves=False`` skip the pictures only the saved files need (notebooks).
    """
    maps = report_maps(expl)
    scales = color_scales(maps)
    colorbars = tuple((s.group, figures.colorbar_png(s)) for s in scales) if overlays else ()
    return ReportAssets(png_bytes(display_image(expl.image)), png_bytes(outline_rgba(expl.image)),
                        map_images(expl, maps, overlays), scales, colorbars,
                        figures.curves_png(expl) if curves else b"")
