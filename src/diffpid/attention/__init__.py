"""Text-attention maps (DAAM, ConceptAttention), along a trajectory or at the estimator's noise levels.

- adapters say where a model's attention lives (:mod:`diffpid.attention.adapters`:
  UNet cross-attention; :mod:`diffpid.attention.joint`: MM-DiT joint attention); a model
  gives its own through ``model.attention_adapter()``;
- :class:`AttentionCapture`: context manager that records per-token maps of chosen
  prompts while the denoiser runs (a pipeline call, inversion, the engine).
- :class:`AttentionMaps`: per-word maps with optional per-step, per-layer and per-head breakdowns.
- :func:`attention_maps`: maps of a model's words at the engine's noise levels, along
  DDIM inversion, or while generating; :func:`attention_and_information` adds the
  words' CMI from the same denoiser calls.
"""

from .collect import AttentionInformation, LabelledModel, attention_and_information, attention_maps
from .capture import AttentionCapture
from .rows import Row, label_rows
from .adapters import AttentionAdapter, CallInputs, LayerCall, UNetCrossAttentionAdapter, cross_attention_layers
from .joint import JointAttentionAdapter
from .maps import AttentionMaps, word_tokens
from .processor import RecordingProcessor, attention_probabilities

__all__ = [
    "AttentionAdapter", "CallInputs", "JointAttentionAdapter", "LayerCall", "UNetCrossAttentionAdapter",
    "AttentionCapture", "AttentionInformation", "AttentionMaps", "LabelledModel", "attention_and_information",
    "attention_maps", "RecordingProcessor", "Row", "attention_probabilities",
    "cross_attention_layers", "label_rows", "word_tokens",
]
