"""Loading diffusers models: pipeline folders or hub ids, component folders, live pipelines.

- :func:`load_model`: a Stable Diffusion 1.x / 2.x or SDXL pipeline (local folder or hub
  id), or a component folder without a VAE (pixel-space models such as the embedded one:
  ``model_index.json`` + ``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
  optionally ``generation.json`` with the model's generation defaults).
- :func:`from_pipeline`: wrap a pipeline the caller already holds, as it is (dtype,
  device, CPU offload hooks); nothing is reloaded.

Both choose the backend by the pipeline's class: UNet pipelines (:data:`PIPELINES`) go to
:class:`~diffpid.models.diffusers.DiffusersModel`, rectified-flow transformer pipelines
(:data:`~diffpid.models.flow_families.FLOW_PIPELINES`: SD3 / SD3.5, Flux.1, Flux.2) to
:class:`~diffpid.models.flow_families.FlowPipelineModel`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, ParameterError

PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
"""Pipeline classes loaded as pipelines; other folders load component by component."""

GENERATION_FILE = "generation.json"
"""Optional file of a component folder with its generation defaults (scheduler, steps, guidance_scale)."""
COMPONENTS = ("unet", "scheduler", "text_encoder", "tokenizer")
TEXT_ENCODER_CLASSES = ("CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", "BertModel")
"""Text encoders a component folder may name; the condition is their last hidden state
(SD 1.x/2.x: CLIP; PixArt-style folders: T5 encoder; Latent Diffusion style and the
embedded shapes model: BERT or T5)."""
UNET_CLASSES = {"diffusers": ("UNet2DConditionModel",), "diffpid": ("CoordUNet2DConditionModel",)}
FLOW_DTYPE_ON_GPU = torch.bfloat16
"""Default dtype of flow-matching transformers on CUDA (they are trained and shipped in bf16)."""


def supported_pipelines() -> str:
    """The pipeline classes diffpid runs, for error messages."""
    from .flow_families import FLOW_PIPELINES

    return ", ".join((*PIPELINES, *FLOW_PIPELINES))
"""UNet classes a component folder may name in ``model_index.json``, by library."""


def unet_class(entry: Any, where: Any = "the folder") -> Any:
    """The UNet class a ``model_index.json`` entry ``[library, class]`` names.

    Raises:
        ModelLoadError: a class this package does not know.
    """
    library, name = entry[0], entry[1]
    if name not in UNET_CLASSES.get(library, ()):
        known = ", ".join(f"{lib}.{n}" for lib, names in UNET_CLASSES.items() for n in names)
        raise ModelLoadError(f"{where}: model_index.json names UNet {library}.{name}; supported: {known}")
    if library == "diffpid":
        from ..shapes import coord_unet

        return getattr(coord_unet, name)
    import diffusers

    return getattr(diffusers, name)


def unet_entry(unet: Any) -> list[str]:
    """The ``model_index.json`` entry ``[library, class]`` of a UNet (inverse of :func:`unet_class`)."""
    name = type(unet).__name__
    return ["diffpid" if name in UNET_CLASSES["diffpid"] else "diffusers", name]


def from_pipeline(pipe: Any, name: str | None = None, **flow_options: Any):
    """Wrap a diffusers pipeline object as a :class:`~diffpid.models.base.Model`, reloading nothing.

    A UNet pipeline becomes a :class:`~diffpid.models.diffusers.DiffusersModel`, a flow-matching
    one (SD3 / SD3.5, Flux.1, Flux.2) a :class:`~diffpid.models.flow_families.FlowPipelineModel`.

    Keeps the pipeline's dtype, device and offloading: denoiser calls run on its
    execution device (``pipe._execution_device``, which follows
    ``enable_model_cpu_offload`` hooks).

    Args:
        pipe: a ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline`` or any pipeline
            with ``unet``, ``scheduler``, ``text_encoder`` and ``tokenizer`` (and optionally
            ``text_encoder_2`` / ``tokenizer_2`` and ``vae``).
        name: display name; default the pipeline's folder or hub id, else its class.
        flow_options: for flow pipelines, keywords of :class:`~diffpid.models.flow_families.FlowPipelineModel`
            (``resolution``, ``guidance``, ``max_sequence_length``, ``generation``).

    Raises:
        ModelLoadError: a pipeline class diffpid does not run (the message lists those it runs).
    """
    from .diffusers import DiffusersModel
    from .flow_families import flow_model_class

    if name is None:
        name = getattr(pipe, "config", {}).get("_name_or_path") or type(pipe).__name__
    display = os.path.basename(str(name).rstrip("/")) or str(name)
    # by class, nearest first: a subclass of a supported pipeline is served as that pipeline
    flow = next((f for f in (flow_model_class(k.__name__) for k in type(pipe).__mro__) if f is not None), None)
    if flow is not None:
        return flow(pipe, name=display, **flow_options)
    if flow_options:
        raise ParameterError(f"{', '.join(sorted(flow_options))} only apply to flow-matching pipelines; "
                             f"{type(pipe).__name__} takes none")
    missing = [c for c in COMPONENTS if getattr(pipe, c, None) is None]
    if missing:
        raise ModelLoadError(
            f"the pipeline {type(pipe).__name__} is not supported (it lacks {', '.join(missing)}); "
            f"diffpid runs {supported_pipelines()}"
        )
    encoders, tokenizers = [pipe.text_encoder], [pipe.tokenizer]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append(pipe.text_encoder_2)
        tokenizers.append(pipe.tokenizer_2)
    return DiffusersModel(pipe.unet, pipe.scheduler, encoders, tokenizers, vae=getattr(pipe, "vae", None),
                          pipeline=pipe, name=display)


def _dtype_key(library: str) -> str:
    """The name of the dtype argument of ``from_pretrained`` (``dtype`` in recent releases)."""
    if library == "transformers":
        import transformers
        from packaging.version import Version

        return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def _default_device(device: Any) -> torch.device:
    """``device`` checked (spelling, and that this machine has it: a one-line ParameterError), else CUDA or CPU."""
    if device is not None:
        if isinstance(device, torch.device):
            device = str(device)
        from ..settings import check_device_available, device_name

        name = device_name(device)
        check_device_available(name)
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model_index(path_or_id: str, local: bool) -> dict:
    try:
        if local:
            return json.loads((Path(path_or_id) / "model_index.json").read_text())
        from diffusers import DiffusionPipeline

        return dict(DiffusionPipeline.load_config(path_or_id))
    except Exception as err:  # noqa: BLE001 - any failure here means "cannot find this model"
        where = "the folder has no readable model_index.json" if local else f"{type(err).__name__}: {err}"
        raise ModelLoadError(
            f"cannot load the model {path_or_id!r} ({where}); check the path or the hub id "
            "(hub ids need network access and no HF_HUB_OFFLINE)"
        ) from err


def load_model(path_or_id: str | os.PathLike, torch_dtype: torch.dtype | None = None,
               device: torch.device | str | None = None):
    """Load a diffusers text-to-image model from a local folder or a hub id as a
    :class:`~diffpid.models.base.Model` (UNet or flow-matching backend, by the pipeline's class).

    Args:
        path_or_id: folder with ``model_index.json``, or a hub id such as
            ``"stabilityai/stable-diffusion-2-1-base"`` or ``"black-forest-labs/FLUX.1-schnell"``
            (needs network).
        torch_dtype: weights' dtype; default float32 (pass ``torch.float16`` or
            ``torch.bfloat16`` for speed), except flow-matching pipelines on CUDA: bfloat16.
        device: where to run; default CUDA when available, else CPU.

    Raises:
        ParameterError: ``device`` is misspelt or not on this machine (``cuda`` without a GPU).
        ModelLoadError: the folder or id cannot be found, or its pipeline class is not supported.
    """
    dev = _default_device(device)  # a wrong or missing device is named before the folder is read
    path_or_id = str(path_or_id)
    local = os.path.isdir(path_or_id)
    looks_like_path = path_or_id.startswith(("/", ".", "~")) or path_or_id.count("/") > 1 or "\\" in path_or_id
    if not local and (looks_like_path or os.path.exists(path_or_id)):
        raise ModelLoadError(f"{path_or_id!r} is not a model folder; check the path or the hub id")
    from .flow_families import flow_model_class

    index = _model_index(path_or_id, local)
    cls = index.get("_class_name", "")
    dev = _default_device(device)
    if flow_model_class(cls) is not None:
        dtype = torch_dtype or (FLOW_DTYPE_ON_GPU if dev.type == "cuda" else torch.float32)
        return _load_flow_pipeline(path_or_id, cls, dtype, dev, local)
    dtype = torch_dtype or torch.float32
    has = {k for k, v in index.items() if isinstance(v, (list, tuple)) and len(v) == 2 and v[0] is not None}
    unet_ok = "unet" in has and index["unet"][1] in UNET_CLASSES.get(index["unet"][0], ())
    if cls in PIPELINES and "vae" in has:
        return _load_pipeline(path_or_id, cls, dtype, dev, local)
    if unet_ok and all(c in has for c in COMPONENTS):
        model = _load_components(path_or_id, index, dtype, dev, local)
        if local and os.path.isfile(os.path.join(path_or_id, "training.json")):  # a trained shapes model
            from ..shapes.model import training_revision

            model.revision = training_revision(path_or_id)
        return model
    raise ModelLoadError(
        f"{path_or_id!r} is a {cls or 'folder'} that diffpid cannot run; supported: {supported_pipelines()} "
        "and folders with unet (UNet2DConditionModel or diffpid's CoordUNet2DConditionModel), scheduler, "
        "text_encoder and tokenizer"
    )


def _load_flow_pipeline(path_or_id: str, cls: str, dtype, dev, local: bool):
    """Load a flow-matching pipeline; a local folder's ``generation.json`` sets its generation defaults."""
    import diffusers

    from .flow_families import check_flow_generation

    generation = {}
    settings = os.path.join(path_or_id, GENERATION_FILE)
    if local and os.path.isfile(settings):
        try:
            with open(settings, encoding="utf-8") as f:
                generation = check_flow_generation(json.load(f), settings)
        except ValueError as err:
            raise ModelLoadError(f"{settings} is not valid JSON ({err}); fix or delete it") from err
    try:
        pipe = getattr(diffusers, cls).from_pretrained(path_or_id, **{_dtype_key("diffusers"): dtype},
                                                       local_files_only=local)
    except Exception as err:  # noqa: BLE001
        why = " ".join(str(err).split())[:300]  # one line
        raise ModelLoadError(f"cannot load the pipeline {path_or_id!r} ({type(err).__name__}: {why}); "
                             "check the path or the hub id") from err
    pipe.set_progress_bar_config(disable=True)
    pipe.to(dev)
    return from_pipeline(pipe, name=path_or_id, generation=generation)


def _load_pipeline(path_or_id: str, cls: str, dtype, dev, local: bool):
    import diffusers

    kwargs: dict[str, Any] = {_dtype_key("diffusers"): dtype, "local_files_only": local}
    if cls == "StableDiffusionPipeline":
        kwargs.update(safety_checker=None, requires_safety_checker=False, feature_extractor=None)
    try:
        pipe = getattr(diffusers, cls).from_pretrained(path_or_id, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the pipeline {path_or_id!r} ({type(err).__name__}: {err}); "
                             "check the path or the hub id") from err
    pipe.set_progress_bar_config(disable=True)
    pipe.to(dev)
    return from_pipeline(pipe, name=path_or_id)


def _load_components(path_or_id: str, index: dict, dtype, dev, local: bool):
    """Load unet, scheduler, tokenizer(s), text encoder(s) and an optional vae one by one."""
    import diffusers
    import transformers
    from transformers import AutoTokenizer

    from .diffusers import DiffusersModel

    def sub(name: str, cls_name: str, library):
        kw: dict[str, Any] = dict(subfolder=name, local_files_only=local)
        try:
            if library is AutoTokenizer:
                return AutoTokenizer.from_pretrained(path_or_id, **kw)
            cls = getattr(library, cls_name)
            if hasattr(cls, "from_config") and name == "scheduler":
                return cls.from_pretrained(path_or_id, **kw)
            kw[_dtype_key("transformers" if library is transformers else "diffusers")] = dtype
            return cls.from_pretrained(path_or_id, **kw).to(dev).eval()
        except Exception as err:  # noqa: BLE001
            raise ModelLoadError(f"cannot load {name}/ of {path_or_id!r} ({type(err).__name__}: {err}); "
                                 "check that the folder is complete") from err

    def library_of(entry) -> Any:
        return {"diffusers": diffusers, "transformers": transformers}.get(entry[0], diffusers)

    unet_type = unet_class(index["unet"], path_or_id)
    unet = sub("unet", unet_type.__name__, sys.modules[unet_type.__module__])
    scheduler = sub("scheduler", index["scheduler"][1], library_of(index["scheduler"]))
    encoders, tokenizers = [], []
    for suffix in ("", "_2"):
        if f"text_encoder{suffix}" not in index:
            continue
        entry = index[f"text_encoder{suffix}"]
        name = entry[1] if entry[1] in TEXT_ENCODER_CLASSES else "CLIPTextModel"
        encoders.append(sub(f"text_encoder{suffix}", name, library_of(entry)))
        tokenizers.append(sub(f"tokenizer{suffix}", "", AutoTokenizer))
        from ..shapes.model import drop_punctuation

        drop_punctuation(tokenizers[-1])  # word-level vocabularies without punctuation (the shapes model)
    vae = None
    if isinstance(index.get("vae"), (list, tuple)) and index["vae"][0] is not None:
        vae = sub("vae", index["vae"][1], library_of(index["vae"]))
    model = DiffusersModel(unet, scheduler, encoders, tokenizers, vae=vae, device=dev,
                           name=os.path.basename(path_or_id.rstrip("/")) or path_or_id)
    settings = os.path.join(path_or_id, GENERATION_FILE)
    if local and os.path.isfile(settings):
        from .diffusers import check_generation

        try:
            with open(settings, encoding="utf-8") as f:
                model.generation.update(check_generation(json.load(f), settings))
        except ValueError as err:
            raise ModelLoadError(f"{settings} is not valid JSON ({err}); fix or delete it") from err
    return model
