"""Which model made a report: the one place that asks a model who it is.

:func:`model_identity` returns a JSON-ready dict recorded in ``results.json`` (``model_identity``)
and printed in the header of ``report.html``::

    name           display name (folder basename or hub id)
    class          the Python class of the model
    source         the folder or hub id it was loaded from, or null
    revision       hub commit (from a ``snapshots/<commit>/`` path), or null
    training_step  the step of ``training.json`` in the model folder (the embedded model), or null
    weights_sha256 first 16 hex digits of the UNet weights file's SHA-256 (local files up to 512 MB), or null
    dtype, device  where and in what precision it ran
    generation     generation defaults: scheduler, steps, guidance_scale (null when it cannot generate)

    family         the backend's family (``unet``, ``flow``, ``oracle``, ...)
    extra          further facts of the backend (e.g. Flux.1-dev's distilled guidance value)

Name, source, revision, dtype, family and generation come from the protocol's
:meth:`~diffpid.models.base.Model.identity`; the report adds what the source folder tells
(its training step, the weights' hash, a cached hub snapshot's revision).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

HASH_LIMIT = 512 * 2**20
"""Weights files up to this size (bytes) are hashed; larger ones (Stable Diffusion UNets) are not."""

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                "diffusion_pytorch_model.bin")


def _revision(source: str | None) -> str | None:
    """The hub commit of a snapshot folder, or of a hub id's cached snapshot (looked up offline)."""
    if not source:
        return None
    match = re.search(r"snapshots[/\\]([0-9a-f]{7,40})", source)
    if match:
        return match.group(1)
    if os.path.isdir(source) or source.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        match = re.search(r"snapshots[/\\]([0-9a-f]{7,40})", snapshot_download(source, local_files_only=True))
    except Exception:  # noqa: BLE001  (not cached, or no hub library: the revision stays unknown)
        return None
    return match.group(1) if match else None


def _training_step(source: str | None) -> int | None:
    if not source or not os.path.isdir(source):
        return None
    path = Path(source) / "training.json"
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) else None


def _weights_hash(source: str | None) -> str | None:
    if not source or not os.path.isdir(source):
        return None
    for name in WEIGHT_FILES:
        path = Path(source) / "unet" / name
        if path.is_file() and path.stat().st_size <= HASH_LIMIT:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            return h.hexdigest()[:16]
    return None


def model_identity(model: Any) -> dict:
    """Name, revision or training step, dtype, device and generation defaults of ``model``.

    Works on any :class:`~diffpid.models.base.Model`; fields the model cannot tell are ``None``.
    """
    ident = model.identity()
    source = ident.source
    gen = dict(ident.generation)
    return {
        "name": ident.name,
        "class": ident.backend,
        "source": source,
        "revision": ident.revision or _revision(source),
        "training_step": _training_step(source),
        "weights_sha256": _weights_hash(source),
        "dtype": ident.dtype,
        "device": str(model.device),
        "generation": {k: gen.get(k) for k in ("scheduler", "steps", "guidance_scale")} if gen else None,
        "family": ident.family,
        "extra": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                  for k, v in ident.extra},
    }


def identity_of(expl: Any) -> dict:
    """The identity recorded in an explanation, or the little its fields tell (name, dtype, device)."""
    ident = getattr(expl, "model_identity", None)
    if ident:
        return dict(ident)
    p = expl.parameters
    return {"name": str(expl.model_name), "class": None, "source": None, "revision": None, "training_step": None,
            "weights_sha256": None, "dtype": p.dtype, "device": p.device, "generation": None}
