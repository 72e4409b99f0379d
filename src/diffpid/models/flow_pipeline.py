"""The diffusers side of the flow-matching backend: what every rectified-flow pipeline shares.

:class:`FlowPipelineModel` wraps a diffusers pipeline whose denoiser is a flow-matching
transformer (``FlowMatchEulerDiscreteScheduler``) as a :class:`~diffpid.models.base.Model`:
prompt encoding as the pipeline does it (cached per prompt, limits checked), one
transformer call per :meth:`~FlowPipelineModel.velocity` (the channel bridge of
:class:`~diffpid.models.flow.FlowMatchingModel` turns it into epsilon), VAE encoding and
decoding with the pipeline's normalisation, seeded generation through the pipeline with
its own defaults, identity and capabilities. What differs per family (the transformer's
call, the text encoders, the latent layout) is in :mod:`diffpid.models.flow_families` and
:mod:`diffpid.models.flow_flux`.

Batch layout of :meth:`FlowPipelineModel.velocity`: for ``n`` inputs and ``k`` conditions
the transformer sees one batch of ``n * k`` rows, row ``i * k + j`` = input ``i`` under
condition ``j`` (as for the UNet backend).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ConditionError, ModelLoadError, ParameterError
from ..prompts import Token
from .base import (ATTENTION, GENERATE, IMAGES, TEXT, CapabilityError, Generated, ModelIdentity, config_source,
                   dtype_name, pairs, pipeline_progress)
from .flow import FlowMatchingModel, _default_range
from .images import image_tensor, to_uint8, vae_call

__all__ = ["GENERATION_KEYS", "FlowCondition", "FlowPipelineModel", "check_flow_generation", "pack_2x2",
           "unpack_2x2"]

CACHE_SIZE = 256
GENERATION_KEYS = ("steps", "guidance_scale", "resolution", "max_sequence_length")
"""Keys of a flow folder's ``generation.json`` (all optional)."""


@dataclass(frozen=True, eq=False)
class FlowCondition:
    """An encoded prompt of a flow pipeline.

    Args:
        prompt: the prompt text.
        embeddings: ``(L, D)`` text states the transformer attends to (model dtype and device).
        pooled: ``(P,)`` pooled text embedding (SD3, Flux.1), else ``None``.
        mask: ``(L,)`` the text tokens the transformer may attend to (Chroma), else ``None`` (all).
    """

    prompt: str
    embeddings: torch.Tensor
    pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None


def check_flow_generation(settings: Any, source: str = "generation settings") -> dict:
    """Validate generation defaults of a flow model (keys of :data:`GENERATION_KEYS`); returns a copy.

    Raises:
        ModelLoadError: an unknown key or a bad value, naming ``source``.
    """
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{source}: expected a JSON object with keys {list(GENERATION_KEYS)}")
    unknown = set(settings) - set(GENERATION_KEYS)
    if unknown:
        raise ModelLoadError(f"{source}: unknown keys {sorted(unknown)}; allowed: {list(GENERATION_KEYS)}")
    out = dict(settings)

    def positive_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    for key in ("steps", "max_sequence_length"):
        if key in out and not positive_int(out[key]):
            raise ModelLoadError(f"{source}: {key} must be a positive integer, got {out[key]!r}")
    if "guidance_scale" in out and not (isinstance(out["guidance_scale"], (int, float)) and out["guidance_scale"] >= 0):
        raise ModelLoadError(f"{source}: guidance_scale must be a number >= 0, got {out['guidance_scale']!r}")
    if "resolution" in out:
        r = out["resolution"]
        r = [r, r] if positive_int(r) else r
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(positive_int(v) for v in r)):
            raise ModelLoadError(f"{source}: resolution must be a positive integer or [height, width], got {r!r}")
        out["resolution"] = (int(r[0]), int(r[1]))
    return out


def pack_2x2(x: torch.Tensor) -> torch.Tensor:
    """Flux packing: ``(n, C, h, w)`` latents to ``(n, h/2 * w/2, 4C)`` tokens of 2x2 patches (row-major)."""
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), c * 4)


def unpack_2x2(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pack_2x2`: ``(n, h/2 * w/2, 4C)`` tokens to ``(n, C, h, w)`` latents."""
    n, _, c4 = tokens.shape
    return tokens.view(n, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c4 // 4, h, w)


def _patchify(z: torch.Tensor) -> torch.Tensor:
    """Flux.2's VAE patchify ``(n, C, h, w)`` -> ``(n, 4C, h/2, w/2)``, channel ``4c + 2dy + dx``."""
    n, c, h, w = z.shape
    return z.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)


def _unpatchify(z: torch.Tensor) -> torch.Tensor:
    n, c4, h, w = z.shape
    return z.reshape(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c4 // 4, h * 2, w * 2)


def _call_defaults(pipe: Any) -> dict[str, Any]:
    """Default arguments of the pipeline's ``__call__`` (steps, guidance, max_sequence_length)."""
    params = inspect.signature(type(pipe).__call__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


class FlowPipelineModel(FlowMatchingModel):
    """A diffusers flow-matching text-to-image pipeline as a :class:`~diffpid.models.base.Model`.

    Args:
        pipe: the pipeline (its dtype, device and offload hooks are kept as they are).
        name: display name.
        resolution: image size ``(H, W)`` or ``H``; default the pipeline's default size.
        guidance: the distilled-guidance value passed to a guidance-embedding transformer
            (Flux.1-dev, Flux.2) with every condition; default the pipeline's ``guidance_scale``.
            Ignored (``None``) for models without the embedding.
        max_sequence_length: text tokens of the long encoder; default the pipeline's
            (capped by the tokenizer's ``model_max_length``).
        generation: generation defaults (``steps``, ``guidance_scale``), e.g. from ``generation.json``.
        device: where the transformer runs; default the pipeline's execution device.
    """

    family = "flow"
    pipeline_classes: tuple[str, ...] = ()
    timestep_scale = 1.0
    """The transformer's timestep is ``timestep_scale * t`` (SD3: 1000, Flux: 1)."""

    def __init__(self, pipe: Any, name: str | None = None, *, resolution: Any = None, guidance: float | None = None,
                 max_sequence_length: int | None = None, generation: dict | None = None,
                 device: torch.device | str | None = None) -> None:
        scheduler = getattr(pipe, "scheduler", None)
        if scheduler is None or "num_train_timesteps" not in scheduler.config or not hasattr(scheduler, "sigmas"):
            raise ModelLoadError(f"the pipeline {type(pipe).__name__} has no flow-matching scheduler "
                                 "(FlowMatchEulerDiscreteScheduler); diffpid cannot bridge it")
        self.pipeline, self.transformer, self.vae, self.scheduler = pipe, pipe.transformer, pipe.vae, scheduler
        vae_cfg = self.vae.config
        self.name = name or type(pipe).__name__
        self.device = device  # None: follow the pipeline's execution device (offload hooks included)
        self.vae_scale_factor = int(getattr(pipe, "vae_scale_factor", 0) or 2 ** (len(vae_cfg.block_out_channels) - 1))
        defaults = self._defaults()
        gen = check_flow_generation(dict(generation or {}), "generation settings")
        self.generation = {"steps": gen.get("steps", defaults["steps"]),
                           "guidance_scale": float(gen.get("guidance_scale", defaults["guidance_scale"]))}
        res = resolution if resolution is not None else gen.get("resolution", defaults["resolution"])
        res = (int(res), int(res)) if isinstance(res, (int, float)) else (int(res[0]), int(res[1]))
        self.resolution = self._check_resolution(res)
        limit = self._long_tokenizer_limit()
        msl = max_sequence_length or gen.get("max_sequence_length") or min(defaults["max_sequence_length"], limit)
        if not isinstance(msl, int) or msl < 1:
            raise ParameterError(f"max_sequence_length must be a positive integer, got {msl!r}")
        self.max_sequence_length = int(msl)
        self.guidance = None
        if self.transformer.config.get("guidance_embeds", False):
            self.guidance = float(self.generation["guidance_scale"] if guidance is None else guidance)
        self.data_shape = self._data_shape()
        cfg = scheduler.config
        t_min = 1.0 / cfg.num_train_timesteps
        if not cfg.get("use_dynamic_shifting", False):
            s = float(cfg.get("shift", 1.0))
            t_min = s * t_min / (1 + (s - 1) * t_min)
        self.t_min = t_min
        self.logsnr_range = _default_range(t_min)
        self._cache: OrderedDict[str, FlowCondition] = OrderedDict()
        self.revision: str | None = None
        """The weights' revision for :meth:`identity` (a hub commit), if known."""
        self.capabilities = frozenset({TEXT, IMAGES, GENERATE} | ({ATTENTION} if self._attention_ok() else set()))

    # ----- description ---------------------------------------------------------------------
    def _defaults(self) -> dict[str, Any]:
        d = _call_defaults(self.pipeline)
        size = int(getattr(self.pipeline, "default_sample_size", 128)) * self.vae_scale_factor
        return {"steps": int(d.get("num_inference_steps", 28)), "guidance_scale": float(d.get("guidance_scale") or 0.0),
                "max_sequence_length": int(d.get("max_sequence_length", 512)), "resolution": size}

    def _check_resolution(self, res: tuple[int, int]) -> tuple[int, int]:
        m = self.vae_scale_factor * 2
        if res[0] % m or res[1] % m or min(res) < m:
            raise ParameterError(f"{self.name} needs image sizes that are multiples of {m}, got {res[0]}x{res[1]}")
        return res

    def _long_tokenizer_limit(self) -> int:
        return 10**9

    @property
    def device(self) -> torch.device:
        """Where denoiser calls run: the device given, else the pipeline's execution device now
        (which follows ``enable_model_cpu_offload`` / sequential offload hooks set at any time)."""
        if self._device is not None:
            return self._device
        return torch.device(self.pipeline._execution_device)

    @device.setter
    def device(self, value: torch.device | str | None) -> None:
        self._device = None if value is None else torch.device(value)

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's dtype (the dtype every denoiser call runs in)."""
        return self.transformer.dtype

    def identity(self) -> ModelIdentity:
        """``"flow"`` family; ``extra`` holds the pipeline class, the architecture (sd3, flux, flux2),
        the distilled guidance value passed with every condition (``None`` without the embedding),
        the resolution, the text length and the log-SNR range."""
        extra = {"pipeline": type(self.pipeline).__name__, "architecture": self.family, "guidance": self.guidance,
                 "resolution": tuple(self.resolution), "max_sequence_length": self.max_sequence_length,
                 "logsnr_range": tuple(round(v, 4) for v in self.logsnr_range)}
        return ModelIdentity(self.name, "flow", type(self).__name__, self.revision, dtype_name(self.dtype),
                             pairs(self.generation), pairs(extra), config_source(self.pipeline))

    def _data_shape(self) -> tuple[int, ...]:
        h, w = (r // self.vae_scale_factor for r in self.resolution)
        return (int(self.transformer.config.in_channels) // 4, h, w)

    # ----- text ---------------------------------------------------------------------------
    def _limits(self) -> list[tuple[str, Any, int]]:
        """``(encoder name, tokenizer, most tokens)`` for every encoder that reads the prompt."""
        raise NotImplementedError  # abstract

    def _count(self, tokenizer: Any, prompt: str) -> int:
        return len(tokenizer(prompt, truncation=False)["input_ids"])

    def check_prompt(self, prompt: Any) -> str:
        """Validate a prompt: a string within every encoder's token limit.

        Raises:
            ConditionError: not a string, or longer than an encoder reads.
        """
        if not isinstance(prompt, str):
            raise ConditionError(f"{self.name} takes text prompts, got {type(prompt).__name__}")
        for encoder, tok, limit in self._limits():
            n = self._count(tok, prompt)
            if n > limit:
                raise ConditionError(f"the prompt has {n} {encoder} tokens but {self.name} reads at most {limit} "
                                     "(special tokens included); shorten the prompt")
        return prompt

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """The tokens that carry the prompt's words to the transformer's attention, with character
        offsets; ``index`` is the position in the transformer's text sequence."""
        raise NotImplementedError  # abstract

    def encode_prompt(self, prompt: str) -> FlowCondition:
        """Encode ``prompt`` as the pipeline does (cached per prompt); ``""`` is unconditional.

        Raises:
            ConditionError: the prompt is not a string or is longer than an encoder's limit.
        """
        if isinstance(prompt, str) and prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        self.check_prompt(prompt)
        with torch.no_grad():
            emb, pooled, *mask = self._encode(prompt)
        mask = mask[0].to(self.device) if mask and mask[0] is not None else None
        cond = FlowCondition(prompt, emb.to(self.device, self.dtype),
                             None if pooled is None else pooled.to(self.device, self.dtype), mask)
        self._cache[prompt] = cond
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return cond

    def _encode(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """``(embeddings (L, D), pooled (P,) or None[, mask (L,)])`` as the pipeline encodes ``prompt``."""
        raise NotImplementedError  # abstract

    # ----- denoiser -----------------------------------------------------------------------
    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, conditions: Sequence[FlowCondition]) -> torch.Tensor:
        """Velocity predictions ``(n, k, *data_shape)`` float32, one transformer call of ``n * k`` rows."""
        n, k = len(x_t), len(conditions)
        out = self.velocity_rows(x_t.repeat_interleave(k, 0), t.repeat_interleave(k), list(conditions) * n)
        return out.reshape(n, k, *self.data_shape)

    def velocity_rows(self, x_t: torch.Tensor, t: torch.Tensor, conditions: Sequence[FlowCondition]) -> torch.Tensor:
        """Velocity predictions ``(n, *data_shape)`` float32, row ``i`` under ``conditions[i]``, one transformer call."""
        emb, mask = _padded_text(conditions)  # (n, L, D), (n, L)
        pooled = None
        if conditions[0].pooled is not None:
            pooled = torch.stack([c.pooled for c in conditions])  # (n, P)
        rows = x_t.to(self.device, self.dtype)
        tt = (self.timestep_scale * t.to(self.device, torch.float32)).to(self.dtype)
        with torch.no_grad():
            out = self._forward(rows, tt, emb, pooled, mask)
        return out.float().reshape(len(x_t), *self.data_shape)

    def _forward(self, rows: torch.Tensor, timestep: torch.Tensor, emb: torch.Tensor,
                 pooled: torch.Tensor | None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The transformer's velocity for ``rows`` ``(N, *data_shape)`` (text ``emb`` ``(N, L, D)``,
        ``pooled`` ``(N, P)``, text ``mask`` ``(N, L)``): ``(N, *data_shape)``."""
        raise NotImplementedError  # abstract

    def _guidance(self, n: int) -> torch.Tensor | None:
        if self.guidance is None:
            return None
        return torch.full((n,), self.guidance, device=self.device, dtype=torch.float32)

    def token_grid(self) -> tuple[int, int]:
        """``(h, w)`` grid of the transformer's image tokens (2x2 patches of the latent grid)."""
        return (self.data_shape[1] // 2, self.data_shape[2] // 2)

    def _attention_ok(self) -> bool:
        """Whether the joint-attention adapter exists here and knows this transformer's class."""
        if _joint_adapter() is None:
            return False
        from ..attention import joint

        known = getattr(joint, "FAMILIES", None)
        return known is None or type(self.transformer).__name__ in known

    def attention_adapter(self):
        """The MM-DiT joint-attention adapter of the transformer
        (:class:`~diffpid.attention.joint.JointAttentionAdapter`, on the image-token grid).

        Raises:
            CapabilityError: this installation has no joint-attention adapter.
        """
        make = _joint_adapter()
        if make is None or not self._attention_ok():
            raise CapabilityError(f"attention maps need a joint-attention adapter for "
                                  f"{type(self.transformer).__name__}, which this version of diffpid lacks "
                                  f"({self.name}); pass attention=False")
        return make(self.transformer, grid=self.token_grid())

    # ----- images -------------------------------------------------------------------------
    def _vae_device(self) -> torch.device:
        return self.device

    def _vae_call(self, fn):
        """``fn(vae)`` without gradients, upcast as the VAE asks (:func:`~diffpid.models.images.vae_call`)."""
        return vae_call(self.vae, fn)

    def _latent_to_data(self, z: torch.Tensor) -> torch.Tensor:
        cfg = self.vae.config
        return (z - (cfg.get("shift_factor", None) or 0.0)) * cfg.scaling_factor

    def _data_to_latent(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.vae.config
        return x / cfg.scaling_factor + (cfg.get("shift_factor", None) or 0.0)

    def encode_image(self, image: Any, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image(s) to data ``(b, *data_shape)`` float32 (CPU): the VAE latent's mean (or a draw), normalised
        as the pipeline normalises it (scaling and shift factors; Flux.2: batch-norm statistics)."""
        if isinstance(image, (list, tuple)):
            return torch.cat([self.encode_image(im, sample, generator) for im in image])
        pixels = image_tensor(image, self.resolution)  # (1, 3, H, W) in [-1, 1]

        def run(vae):
            dist = vae.encode(pixels.to(self._vae_device(), vae.dtype)).latent_dist
            return (dist.sample(generator) if sample else dist.mean).float()

        return self._latent_to_data(self._vae_call(run)).cpu()

    def decode(self, x: torch.Tensor):
        """Data ``(n, *data_shape)`` to ``(n, H, W, 3)`` uint8 images."""
        x = self.check_x(x)
        z = self._data_to_latent(x.float().to(self._vae_device()))
        return to_uint8(self._vae_call(lambda vae: vae.decode(z.to(vae.dtype)).sample.float().cpu()))

    # ----- generation ---------------------------------------------------------------------
    def _pipeline_call(self, prompt: str, steps: int, guidance_scale: float, g: torch.Generator, h: int, w: int):
        """The pipeline's latents for one seeded generation."""
        return self.pipeline(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance_scale, generator=g,
                             height=h, width=w, output_type="latent", **self._call_kwargs()).images

    def _call_kwargs(self) -> dict[str, Any]:
        return {"max_sequence_length": self.max_sequence_length}

    def _from_pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def generate(self, prompt: str, seed: int = 0, steps: int | None = None,
                 guidance_scale: float | None = None, progress: bool = False) -> Generated:
        """Generate one image through the pipeline, reproducible from ``seed`` (CPU generator).

        Args:
            prompt: the prompt.
            seed: the random seed.
            steps: sampling steps; default :attr:`generation` (the pipeline's, 4 for Flux.1-schnell).
            guidance_scale: the pipeline's guidance (SD3: classifier-free; Flux.1-dev, Flux.2: the
                distilled value); default :attr:`generation`.
            progress: show the pipeline's progress bar over the generation steps.
        """
        self.check_prompt(prompt)
        steps = self.generation["steps"] if steps is None else steps
        guidance_scale = self.generation["guidance_scale"] if guidance_scale is None else guidance_scale
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ParameterError(f"steps must be a positive integer, got {steps!r}")
        if not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
            raise ParameterError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
        g = torch.Generator("cpu").manual_seed(int(seed))
        h, w = self.resolution
        with torch.no_grad(), pipeline_progress(self.pipeline, progress):
            latents = self._pipeline_call(prompt, steps, float(guidance_scale), g, h, w)
        x = self._from_pipeline_latents(latents).float().cpu()
        return Generated(self.decode(x)[0], x, prompt, int(seed))


def _padded_text(conditions: Sequence[FlowCondition]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The conditions' text states ``(k, L, D)`` and masks ``(k, L)``; texts of different lengths
    (Qwen-Image keeps each prompt's own length) are zero-padded at the end with the padding masked."""
    lengths = [len(c.embeddings) for c in conditions]
    if conditions[0].mask is None:
        return torch.stack([c.embeddings for c in conditions]), None
    top = max(lengths)

    def pad(v: torch.Tensor) -> torch.Tensor:  # (L, ...) -> (top, ...), zeros at the end
        return torch.cat([v, v.new_zeros((top - len(v), *v.shape[1:]))]) if len(v) < top else v

    return torch.stack([pad(c.embeddings) for c in conditions]), torch.stack([pad(c.mask) for c in conditions])


def _joint_adapter():
    """The joint-attention adapter class, or ``None`` where :mod:`diffpid.attention.joint` is absent."""
    try:
        from ..attention.joint import JointAttentionAdapter
    except ImportError:
        return None
    return JointAttentionAdapter


def _offset(tokens: Sequence[Token], by: int) -> list[Token]:
    return [Token(t.index + by, t.text, t.start, t.end, t.special) for t in tokens]
