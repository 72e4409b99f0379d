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
    """How the model enters run parameters: ``embedded:shapes``, an absolute folder, a hub id, or a model's name."""
    if isinstance(model, Model):
        return f"object:{model.name}"
    if model is None:
        return "embedded:shapes"
    return os.path.abspath(model) if os.path.isdir(str(model)) else str(model)


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
    folder = model_folder(model)
    if folder is not None and (folder / "training.json").exists():
        try:
            rec = json.loads((folder / "training.json").read_text())
        except (OSError, ValueError):
            rec = {}
        if isinstance(rec, dict) and "steps" in rec:
            facts["training_steps"] = rec["steps"]
    return facts


def resolve(model: Any, device: Any = None, dtype: Any = None) -> Model:
    """A :class:`Model` from a model, ``None`` (the embedded shapes model), a folder or a hub id."""
    from ..explain import resolve_model

    return resolve_model(model, device=device, dtype=dtype)
