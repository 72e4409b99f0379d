"""The images of a report, rendered once and shared by ``report.html`` and the PNG files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import figures
from .maps import ColorScale, ReportMap, color_scales, display_image, overlay, png_bytes, report_maps, scale_of


@dataclass(frozen=True)
class MapImage:
    """One map with its overlay.

    Args:
        map: the map.
        scale: its group's shared colour scale.
        png: the overlay on the (enlarged) image as PNG bytes.
    """

    map: ReportMap
    scale: ColorScale
    png: bytes


@dataclass(frozen=True)
class ReportAssets:
    """Every image of a report.

    Args:
        image_png: the analysed image (enlarged for display when small), PNG bytes.
        maps: one :class:`MapImage` per map, in report order.
        scales: the colour scale of every group present.
        colorbars: ``(group, png bytes)`` of every scale's colour bar.
        curves_png: the noise-level curves (:func:`diffpid.report.figures.plot_curves`).
    """

    image_png: bytes
    maps: tuple[MapImage, ...]
    scales: tuple[ColorScale, ...]
    colorbars: tuple[tuple[str, bytes], ...]
    curves_png: bytes

    def colorbar(self, group: str) -> bytes:
        """The colour bar PNG of ``group``."""
        return dict(self.colorbars)[group]


def build_assets(expl: Any) -> ReportAssets:
    """Render the overlays, colour bars, image and curves of an explanation."""
    maps = report_maps(expl)
    scales = color_scales(maps)
    images = tuple(MapImage(m, scale_of(scales, m.kind), png_bytes(overlay(expl.image, m.values, scale_of(scales, m.kind))))
                   for m in maps)
    colorbars = tuple((s.group, figures.colorbar_png(s)) for s in scales)
    return ReportAssets(png_bytes(display_image(expl.image)), images, scales, colorbars, figures.curves_png(expl))
