"""Cross-attention maps (DAAM), along a trajectory or at the estimator's noise levels.

- :class:`AttentionCapture`: context manager that records per-token maps of chosen
  prompts while a diffusers UNet runs (a pipeline call, inversion, the engine).
- :class:`AttentionMaps`: per-word maps with optional per-step, per-layer and per-head breakdowns.
- :func:`attention_maps`: maps of a model's words at the engine's noise levels, along
  DDIM inversion, or while generating; :func:`attention_and_information` adds the
  words' CMI from the same denoiser calls.
"""

from .collect import AttentionInformation, LabelledModel, attention_and_information, attention_maps, ddim_inversion
from .capture import AttentionCapture
from .rows import Row, cross_attention_layers, label_rows
from .maps import AttentionMaps, word_tokens
from .processor import RecordingProcessor, attention_probabilities

__all__ = [
    "AttentionCapture", "AttentionInformation", "AttentionMaps", "LabelledModel", "attention_and_information",
    "attention_maps", "ddim_inversion", "RecordingProcessor", "Row", "attention_probabilities",
    "cross_attention_layers", "label_rows", "word_tokens",
]
