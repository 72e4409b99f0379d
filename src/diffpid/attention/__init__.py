"""Cross-attention maps (DAAM), along a trajectory or at the estimator's noise levels.

- :class:`AttentionCapture`: context manager that records per-token maps of chosen
  prompts while a diffusers UNet runs (a pipeline call, inversion, the engine).
- :class:`AttentionMaps`: per-word maps with optional per-step, per-layer and per-head breakdowns.
"""

from .capture import AttentionCapture, Row, cross_attention_layers
from .maps import AttentionMaps, word_tokens
from .processor import RecordingProcessor, attention_probabilities

__all__ = [
    "AttentionCapture", "AttentionMaps", "RecordingProcessor", "Row", "attention_probabilities",
    "cross_attention_layers", "word_tokens",
]
