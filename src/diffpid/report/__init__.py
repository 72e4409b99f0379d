"""The report of an explanation: self-contained HTML, PNG overlays, ``results.json`` and ``maps.npz``.

- :func:`render_html` the HTML text; :func:`save_explanation` the whole folder, atomically;
- :func:`explanation_to_dict` every value with its standard error (``results.json``);
- :func:`plot_maps`, :func:`plot_curves` matplotlib figures for notebooks.

This package knows nothing of torch: it reads the numpy arrays and floats of an
:class:`~diffpid.explain.Explanation`.
"""

from .figures import plot_curves, plot_maps
from .html import render_html
from .maps import ColorScale, ReportMap, color_scales, report_maps
from .results import explanation_to_dict, results_schema
from .save import save_explanation

__all__ = [
    "ColorScale", "ReportMap", "color_scales", "explanation_to_dict", "plot_curves", "plot_maps", "render_html",
    "report_maps", "results_schema", "save_explanation",
]
