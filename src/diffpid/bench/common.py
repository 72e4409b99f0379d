"""What every bench run shares: the model argument, its facts for the tables, and item data.

A bench's items are :class:`~diffpid.runs.Item` whose ``data`` is either a case object or a
zero-argument callable that loads it (so that datasets of thousands of images are read one
item at a time).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..models.base import Model

__all__ = ["load_case", "model_facts", "model_key", "resolve"]


def load_case(data: Any) -> Any:
    """The case of an item: ``data`` itself, or what ``data()`` returns when it is callable."""
    return data() if callable(data) else data


def model_key(model: Any) -> str:
    """How the model enters run parameters: ``embedded:shapes``, an absolute folder, a hub id, or a model's name.

    A folder with a ``training.json`` (a shapes checkpoint) adds its training step (``embedded:shapes@step3000``),
    so that a retrained checkpoint starts a new run instead of reusing the old one's results.
    """
    if isinstance(model, Model):
        return f"object:{model.name}"
    key = "embedded:shapes" if model is None else os.path.abspath(model) if os.path.isdir(str(model)) else str(model)
    step = _training_step(model_folder(model))
    return key if step is None else f"{key}@step{step}"


def _training_step(folder: Path | None) -> Any:
    if folder is None or not (folder / "training.json").exists():
        return None
    try:
        rec = json.loads((folder / "training.json").read_text())
    except (OSError, ValueError):
        return None
    return rec.get("steps") if isinstance(rec, dict) else None


def model_folder(model: Any) -> Path | None:
    """The folder of the model when it is the embedded one or a local folder."""
    if model is None:
        from ..models.shapes import default_model_path

        return default_model_path()
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
        return Path(model)
    return None


def model_facts(model: Any) -> dict[str, Any]:
    """Facts about the model for results tables: its key and, for shapes checkpoints, the training step."""
    facts: dict[str, Any] = {"model": model_key(model)}
    step = _training_step(model_folder(model))
    if step is not None:
        facts["training_steps"] = step
    return facts


def resolve(model: Any, device: Any = None, dtype: Any = None) -> Model:
    """A :class:`Model` from a model, ``None`` (the embedded shapes model), a folder or a hub id."""
    from ..explain import resolve_model

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
