"""diffpid: explain text-to-image diffusion models with information theory.

Per-word mutual information and conditional mutual information (Kong et al., ICLR 2024)
and the partial information decomposition of two words (DiffusionPID, NeurIPS 2024),
estimated exactly from the denoiser, beside attention maps.

The front door is :func:`explain`; every measure takes ``(model, x, condition..., settings)``
with a :class:`Settings` (or its fields as keywords). Those who build new measures will find
the engine in :mod:`diffpid.engine` and named multi-measurement runs in :class:`Plan`.
"""

from .attention import AttentionMaps, attention_and_information, attention_maps
from .decomposition.dataset import DatasetPID, dataset_pid
from .decomposition.pid import PID, pid
from .errors import DiffpidError
from .explanation import Explanation, explain
from .information import Information, conditional_mutual_information, mutual_information
from .models.base import Model
from .models.loading import from_pipeline, load_model
from .plan import Plan
from .settings import Settings
from .shapes.model import load_shapes_model

__version__ = "0.1.0"

__all__ = [
    "explain", "Explanation", "Settings",
    "mutual_information", "conditional_mutual_information", "pid", "dataset_pid", "Plan",
    "Information", "PID", "DatasetPID",
    "attention_maps", "attention_and_information", "AttentionMaps",
    "load_model", "from_pipeline", "load_shapes_model", "Model",
    "DiffpidError", "__version__",
]
