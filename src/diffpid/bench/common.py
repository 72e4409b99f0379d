"""What every bench run shares: the model argument, its facts for the tables, item data, settings.

A bench's items are :class:`~diffpid.runs.runner.Item` whose ``data`` is either a case object or a
zero-argument callable that loads it (so that datasets of thousands of images are read one
item at a time). Every bench takes one :class:`~diffpid.settings.Settings`; the run seed is
``settings.seed`` and each item runs with its own seed (:func:`item_settings`).
"""

from __future__ import annotations

from typing import Any

from ..models.base import Model
from ..runs.runner import model_folder, model_key, training_step
from ..settings import Settings

__all__ = ["LazyModel", "item_settings", "load_case", "model_facts", "model_key", "settings_parameters"]


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


def item_settings(settings: Settings, item_seed: int, modulus: int = 2**63) -> Settings:
    """The settings of one item: its own seed (``item_seed % modulus``), no inner progress bar."""
    return settings.replace(seed=item_seed % modulus, progress=False)


def settings_parameters(settings: Settings) -> dict[str, Any]:
    """The settings that change a bench's numbers, as run parameters (the run's folder hash).

    ``samples`` and ``sampler`` always; ``dtype`` when one is set and ``precision`` (with
    ``max_samples``) when a target is set, so that runs without them keep their folders.
    ``batch_size``, ``device``, ``threads`` and ``progress`` do not change the numbers.
    """
    out: dict[str, Any] = {"samples": settings.samples, "sampler": settings.to_dict()["sampler"]}
    if settings.dtype is not None:
        out["dtype"] = settings.dtype
    if settings.precision is not None:
        out.update(precision=settings.precision, precision_floor=settings.precision_floor,
                   max_samples=settings.max_samples)
    return out


class LazyModel:
    """The bench model, resolved on first use, so a run with nothing left to compute loads nothing.

    Args:
        model: a :class:`Model`, a folder or hub id, or ``None`` (the embedded shapes model).
        settings: ``device`` and ``dtype`` of a model loaded by name (a model passed in keeps its own).
        state: an ``accelerate.PartialState``: without ``settings.device`` the model goes to this
            process's device (one GPU per process under ``accelerate launch``).
    """

    def __init__(self, model: Any, settings: Settings | None = None, state: Any = None) -> None:
        self.spec, self.settings = model, Settings.of(settings)
        self.device = self.settings.device or (None if state is None else getattr(state, "device", None))
        self._model: Model | None = None

    def runs_on(self) -> str:
        """Where the model computes, without loading it: a given model's device, else the device it is
        loaded on (``settings.device``, the process's device, else the GPU when there is one)."""
        if isinstance(self.spec, Model):
            return str(self.spec.device)
        return str(self.device if self.device is not None else self.settings.torch_device())

    def get(self) -> Model:
        if self._model is None:
            from ..explanation import resolve_model

            self._model = resolve_model(self.spec, device=self.device, dtype=self.settings.torch_dtype())
        return self._model
