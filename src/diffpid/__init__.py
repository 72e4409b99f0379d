"""diffpid: explain text-to-image diffusion models with information theory.

Per-word mutual information and conditional mutual information (Kong et al., ICLR 2024)
and the partial information decomposition of two words (DiffusionPID, NeurIPS 2024),
estimated exactly from the denoiser.
"""

from .attention import (AttentionCapture, AttentionInformation, AttentionMaps, attention_and_information,
                        attention_maps)
from .channel import LogisticSampler, SobolSampler, UniformSampler, make_sampler
from .errors import DiffpidError
from .estimate import Combination, Difference, EngineResult, Minimum, estimate
from .information import Information, conditional_mutual_information, mutual_information
from .models.base import Generated, Model
from .models.diffusers import DiffusersModel, TextCondition
from .models.loading import from_pipeline, load_model
from .models.mixture import GaussianMixture
from .models.shapes import default_model_path, load_shapes_model
from .pid import PID, Atom, pid
from .pid_dataset import DatasetPID, average_pid, dataset_pid
from .sampling import ddim_generate, ddim_invert
from .runs import Item, ItemResult, RunSummary, collect, run_items, summarize

__version__ = "0.1.0"

__all__ = [
    "DiffpidError", "Difference", "EngineResult", "GaussianMixture", "Generated", "Information",
    "LogisticSampler", "Minimum", "Model", "SobolSampler", "UniformSampler", "conditional_mutual_information",
    "estimate", "make_sampler", "mutual_information",
    "DiffusersModel", "TextCondition", "from_pipeline", "load_model",
    "Atom", "Combination", "DatasetPID", "PID", "average_pid", "dataset_pid", "pid",
    "AttentionCapture", "AttentionInformation", "AttentionMaps", "attention_and_information", "attention_maps",
    "Item", "ItemResult", "RunSummary", "collect", "run_items", "summarize",
    "default_model_path", "load_shapes_model",
    "ddim_generate", "ddim_invert",
]
