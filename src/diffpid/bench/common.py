"""What every bench run shares: the model argument, its facts for the tables, and item data.

A bench's items are :class:`~diffpid.runs.Item` whose ``data`` is either a case object or a
zero-argument callable that loads it (so that datasets of thousands of images are read one
item at a time).
"""

from __future__ import annotations

from typing import Any

from ..models.base import Model
from ..runs import model_folder, model_key, training_step

__all__ = ["load_case", "model_facts", "model_key", "resolve"]


def load_case(data: Any) -> Any:
    """The case of an item: ``data`` itself, or what ``data()`` returns when it is callable."""
    return data() if callable(data) else data


def model_facts(model: Any) -> dict[str, Any]:
    """Facts about the model for results tables: its key and, for shapes checkpoints, the training step."""
    facts: dict[str, Any] = {"model": model_key(model)}
    step = training_step(model_folder(model))
    if step is not None:
        facts["training_steps"] = step
    return facts


def resolve(model: Any, device: Any = None, dtype: Any = None) -> Model:
    """A :class:`Model` from a model, ``None`` (the embedded shapes model), a folder or a hub id."""
    from ..explanation import resolve_model

    return resolve_model(model, device=device, dtype=dtype)


class LazyModel:
    """The bench model, resolved on first use, so a run with nothing left to compute loads nothing."""

    def __init__(self, model: Any, device: Any = None, dtype: Any = None) -> None:
        self.spec, self.device, self.dtype = model, device, dtype
        self._model: Model | None = None

    def get(self) -> Model:
        if self._model is None:
            self._model = resolve(self.spec, device=self.device, dtype=self.dtype)
        return self._model
