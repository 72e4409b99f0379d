"""The report of an explanation: self-contained HTML, PNG overlays, ``results.json`` and ``maps.npz``.

- :func:`render_html` the HTML text; :func:`save_explanation` the whole folder, atomically;
- :func:`explanation_to_dict` every value with its standard error (``results.json``);
- :func:`plot_maps`, :func:`plot_curves` matplotlib figures for notebooks (results also display
  themselves in Jupyter: :mod:`diffpid.report.notebook`);
- :func:`format_pm` a value rounded to the precision of its standard error;
- :func:`model_identity` the name, revision or training step, dtype and generation settings of a model.

This package knows nothing of torch: it reads the numpy arrays and floats of an
:class:`~diffpid.explain.Explanation`.
"""

from .figures import plot_curves, plot_maps
from .format import format_pm, near_zero
from .html import render_html
from .identity import model_identity
from .maps import ColorScale, ReportMap, color_scales, own_scale, report_maps, shared_scale
from .results import explanation_to_dict, results_schema
from .save import save_explanation

__all__ = [
    "ColorScale", "ReportMap", "color_scales", "explanation_to_dict", "format_pm", "model_identity", "near_zero",
    "own_scale", "plot_curves", "plot_maps", "render_html", "report_maps", "results_schema", "save_explanation",
    "shared_scale",
]
