"""Stable Diffusion 1.x / 2.x, SDXL and pixel-space diffusers models behind the Model protocol.

:class:`DiffusersModel` wraps the parts of a diffusers text-to-image model (UNet,
scheduler, tokenizer(s), text encoder(s), optional VAE and pipeline). The engine's
variance-preserving channel is the DDPM forward process, so a noisy input ``x_a`` goes
into the UNet as it is, at the trained timestep whose log-SNR ``logit(alphas_cumprod[t])``
is nearest to ``a``; every prediction type is converted to epsilon at the exact ``a``.

Batch layout of :meth:`DiffusersModel.eps` (attention capture relies on it): for ``n``
inputs and ``k`` conditions the UNet sees one batch of ``n * k`` rows in input-major
order, row ``i * k + j`` = input ``i`` under condition ``j``. :meth:`DiffusersModel.eps_rows`
takes the rows as they are (row ``i`` under its own condition), so inputs of several items
share a call.

Loading: :func:`load_model` and :func:`from_pipeline` (defined in
:mod:`diffpid.models.loading`, importable from here too).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ..engine.channel import logsnr_from_alphas_cumprod
from ..errors import ConditionError, ModelLoadError, ParameterError
from ..prompts import Token, tokens_of
from .base import (ATTENTION, GENERATE, IMAGES, TEXT, Generated, Model, ModelIdentity, config_source, dtype_name,
                   pairs, pipeline_progress)
from .images import image_tensor, to_uint8, vae_call

__all__ = ["DiffusersModel", "TextCondition"]

CACHE_SIZE = 256

DEFAULT_GENERATION = {"scheduler": "ddim", "steps": 50, "guidance_scale": 7.5}
"""Generation defaults of a model; a component folder can override them with a
``generation.json`` (the embedded shapes model samples best with ancestral DDPM at guidance 3)."""
GENERATION_SCHEDULERS = ("ddim", "ddpm")
LEGACY_GENERATION_KEYS = {"sampler": "scheduler"}
"""Keys of older ``generation.json`` files, read under their current names."""


def check_generation(settings: dict, source: str = "generation settings") -> dict:
    """Validate generation defaults (keys of :data:`DEFAULT_GENERATION`); returns a copy.

    Raises:
        ModelLoadError: an unknown key or a bad value, naming ``source``.
    """
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{source}: expected a JSON object like {DEFAULT_GENERATION}, got {type(settings).__name__}")
    settings = {LEGACY_GENERATION_KEYS.get(k, k): v for k, v in settings.items()
                if not (k in LEGACY_GENERATION_KEYS and LEGACY_GENERATION_KEYS[k] in settings)}
    unknown = set(settings) - set(DEFAULT_GENERATION)
    if unknown:
        raise ModelLoadError(f"{source}: unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULT_GENERATION)}")
    out = dict(settings)
    if "scheduler" in out and out["scheduler"] not in GENERATION_SCHEDULERS:
        raise ModelLoadError(f"{source}: scheduler must be one of {GENERATION_SCHEDULERS}, got {out['scheduler']!r}")
    if "steps" in out and (not isinstance(out["steps"], int) or isinstance(out["steps"], bool) or out["steps"] < 1):
        raise ModelLoadError(f"{source}: steps must be a positive integer, got {out['steps']!r}")
    if "guidance_scale" in out and not (isinstance(out["guidance_scale"], (int, float)) and out["guidance_scale"] >= 0):
        raise ModelLoadError(f"{source}: guidance_scale must be a number >= 0, got {out['guidance_scale']!r}")
    return out


@dataclass(frozen=True, eq=False)
class TextCondition:
    """An encoded prompt.

    Args:
        prompt: the prompt text.
        token_ids: the token ids of the first tokenizer, unpadded, special tokens included.
        embeddings: ``(L, D)`` encoder hidden states the UNet attends to (model dtype and device).
        pooled: ``(P,)`` pooled text embedding (SDXL), else ``None``.
    """

    prompt: str
    token_ids: tuple[int, ...]
    embeddings: torch.Tensor
    pooled: torch.Tensor | None = None


def _size(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


class DiffusersModel(Model):
    """A diffusers text-to-image model as a :class:`~diffpid.models.base.Model`.

    Args:
        unet: a ``UNet2DConditionModel`` (SDXL: with ``addition_embed_type="text_time"``).
        scheduler: a DDPM-family scheduler with ``alphas_cumprod`` (DDPM, DDIM, PNDM, Euler, ...).
        text_encoders: one (SD) or two (SDXL, the second with projection) text encoders.
        tokenizers: the matching tokenizers.
        vae: an ``AutoencoderKL``; ``None`` for pixel-space models (data in ``[-1, 1]``).
        pipeline: the diffusers pipeline the parts belong to, if any (used to encode
            prompts exactly as it does, to generate, and for its execution device).
        name: a display name.
        device: where the UNet runs; default the pipeline's execution device or the UNet's.
    """

    def __init__(self, unet, scheduler, text_encoders: Sequence[Any], tokenizers: Sequence[Any], vae=None,
                 pipeline=None, name: str = "diffusers", device: torch.device | str | None = None) -> None:
        if not hasattr(scheduler, "alphas_cumprod"):
            raise ModelLoadError(
                f"the scheduler {type(scheduler).__name__} has no alphas_cumprod; diffpid supports DDPM-family "
                "(variance-preserving) schedulers such as DDPMScheduler, DDIMScheduler, PNDMScheduler"
            )
        text_encoders, tokenizers = list(text_encoders), list(tokenizers)
        if not text_encoders or len(text_encoders) != len(tokenizers):
            raise ModelLoadError("give as many tokenizers as text encoders (one for SD, two for SDXL)")
        self.unet, self.scheduler, self.vae, self.pipeline = unet, scheduler, vae, pipeline
        self.text_encoders, self.tokenizers, self.name = text_encoders, tokenizers, name
        if device is None:
            device = pipeline._execution_device if pipeline is not None else next(unet.parameters()).device
        self.device = torch.device(device)
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ModelLoadError(f"unsupported prediction_type {self.prediction_type!r}; expected epsilon, v_prediction or sample")
        self._lam = logsnr_from_alphas_cumprod(scheduler.alphas_cumprod.detach().cpu())  # (T,) float64
        finite = self._lam[torch.isfinite(self._lam)]
        self.logsnr_range = (float(finite.min()), float(finite.max()))
        self.sdxl = unet.config.get("addition_embed_type") == "text_time"
        sample = _size(unet.config.sample_size)
        if vae is not None:
            self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
            self.resolution = (sample[0] * self.vae_scale_factor, sample[1] * self.vae_scale_factor)
            self.data_shape = (int(vae.config.latent_channels), *sample)
        else:
            self.vae_scale_factor = 1
            self.resolution = sample
            self.data_shape = (int(unet.config.in_channels), *sample)
        self._cache: OrderedDict[str, TextCondition] = OrderedDict()
        self.generation = dict(DEFAULT_GENERATION)
        self.revision: str | None = None
        """The weights' revision for :meth:`identity` (a hub commit, a training step), if known."""
        self.capabilities = frozenset({TEXT, ATTENTION, GENERATE} | ({IMAGES} if vae is not None else set()))

    # ----- capabilities -------------------------------------------------------------------
    def identity(self) -> ModelIdentity:
        """Name, ``"unet"`` family, revision, dtype, generation defaults and the source of the weights."""
        return ModelIdentity(self.name, "unet", type(self).__name__, self.revision, dtype_name(self.dtype),
                             pairs(self.generation), pairs({"prediction_type": self.prediction_type,
                                                            "sdxl": self.sdxl}),
                             config_source(self.unet, self.pipeline))

    def attention_adapter(self):
        """The UNet's cross-attention adapter (:class:`~diffpid.attention.adapters.UNetCrossAttentionAdapter`)."""
        from ..attention.adapters import UNetCrossAttentionAdapter

        return UNetCrossAttentionAdapter(self.unet)

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's dtype (the dtype every denoiser call runs in)."""
        return self.unet.dtype

    # ----- text ---------------------------------------------------------------------------
    @property
    def max_tokens(self) -> int:
        """Most tokens (special tokens included) the text encoder reads."""
        tok, enc = self.tokenizers[0], self.text_encoders[0]
        limit = int(getattr(enc.config, "max_position_embeddings", 10**9))
        return min(int(tok.model_max_length), limit)

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """The prompt's tokens (first tokenizer) with character offsets; BOS has index 0."""
        return tokens_of(prompt, self.tokenizers[0])

    def _check_prompt(self, prompt: str) -> tuple[int, ...]:
        if not isinstance(prompt, str):
            raise ConditionError(f"{self.name} takes text prompts, got {type(prompt).__name__}")
        tok = self.tokenizers[0]
        ids = tuple(tok(prompt, truncation=False)["input_ids"])
        if len(ids) > self.max_tokens:
            raise ConditionError(
                f"the prompt has {len(ids)} tokens but {self.name} reads at most {self.max_tokens} "
                "(start and end tokens included); shorten the prompt"
            )
        unk = tok.unk_token_id
        if unk is not None and unk not in {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id} and unk in ids:
            words = [prompt[t.start : t.end] for t in self.tokenize(prompt) if not t.special and
                     ids[t.index] == unk]
            vocab = sorted(w for w in tok.get_vocab() if w not in tok.all_special_tokens)
            shown = ", ".join(vocab) if len(vocab) <= 300 else f"{len(vocab)} words"
            raise ConditionError(f"words outside the vocabulary of {self.name}: {', '.join(words)}; known words: {shown}")
        return ids

    def encode_prompt(self, prompt: str) -> TextCondition:
        """Encode ``prompt`` as the pipeline does (cached per prompt); ``""`` is unconditional.

        Raises:
            ConditionError: the prompt is longer than the encoder's limit, or has unknown words.
        """
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        ids = self._check_prompt(prompt)
        with torch.no_grad():
            emb, pooled = self._encode_with_pipeline(prompt) if self.pipeline is not None else self._encode(prompt)
        cond = TextCondition(prompt, ids, emb.to(self.device, self.dtype),
                             None if pooled is None else pooled.to(self.device, self.dtype))
        self._cache[prompt] = cond
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return cond

    def _encode_with_pipeline(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.pipeline.encode_prompt(prompt, device=self.device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=False)
        return out[0][0], (out[2][0] if self.sdxl else None)

    def _encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SD: last hidden state of the padded prompt; SDXL: penultimate states of both encoders
        concatenated, pooled projection of the last encoder (``(L, D)``, ``(P,)`` or ``None``)."""
        states, pooled = [], None
        for tok, enc in zip(self.tokenizers, self.text_encoders):
            ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            dev = next(enc.parameters()).device
            mask = None
            if getattr(enc.config, "use_attention_mask", False):
                mask = (ids != tok.pad_token_id).long().to(dev)
            out = enc(ids.to(dev), attention_mask=mask, output_hidden_states=self.sdxl)
            states.append(out.hidden_states[-2][0] if self.sdxl else out[0][0])
            pooled = out[0][0] if self.sdxl else None
        return torch.cat(states, -1), pooled

    # ----- denoiser -----------------------------------------------------------------------
    def timesteps(self, logsnr: torch.Tensor) -> torch.Tensor:
        """The trained timesteps whose log-SNR is nearest to ``logsnr`` ``(n,)``: ``(n,)`` long."""
        a = logsnr.detach().double().cpu().reshape(-1, 1)
        return (a - self._lam[None]).abs().argmin(1)

    def _unet(self, x: torch.Tensor, t: torch.Tensor, conditions: Sequence[TextCondition]) -> torch.Tensor:
        """Raw UNet output for every input under every condition: ``(n, k, *data_shape)`` float32."""
        n, k = len(x), len(conditions)
        out = self._unet_rows(x.repeat_interleave(k, 0), t.repeat_interleave(k), list(conditions) * n)
        return out.reshape(n, k, *self.data_shape)

    def _unet_rows(self, x: torch.Tensor, t: torch.Tensor, conditions: Sequence[TextCondition]) -> torch.Tensor:
        """Raw UNet output of rows, row ``i`` = ``x[i]`` at timestep ``t[i]`` under ``conditions[i]``:
        ``(n, *data_shape)`` float32, one UNet call."""
        n = len(x)
        emb = torch.stack([c.embeddings for c in conditions])  # (n, L, D)
        kwargs = {}
        if self.sdxl:
            pooled = torch.stack([c.pooled for c in conditions])  # (n, P)
            h, w = self.resolution
            ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=self.dtype, device=self.device).repeat(n, 1)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": ids}
        with torch.no_grad():
            out = self.unet(x.to(self.device, self.dtype), t.to(self.device), encoder_hidden_states=emb,
                            return_dict=False, **kwargs)[0]
        return out.float().reshape(n, *self.data_shape)

    def eps(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[TextCondition]) -> torch.Tensor:
        """Epsilon predictions ``(n, k, *data_shape)`` float32 on :attr:`device`, one UNet call of ``n * k``
        rows in input-major order.

        Args:
            x_a: ``(n, *data_shape)`` noisy inputs.
            logsnr: ``(n,)`` their exact log-SNR.
            conditions: ``k`` conditions from :meth:`encode_prompt`.
        """
        n, k = len(x_a), len(conditions)
        out = self.eps_rows(x_a.repeat_interleave(k, 0), logsnr.repeat_interleave(k), list(conditions) * n)
        return out.reshape(n, k, *self.data_shape)

    def eps_rows(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[TextCondition]) -> torch.Tensor:
        """Epsilon predictions ``(n, *data_shape)`` float32, row ``i`` = ``x_a[i]`` under ``conditions[i]``,
        one UNet call (the rows of several items share it)."""
        out = self._unet_rows(x_a, self.timesteps(logsnr), conditions)
        if self.prediction_type == "epsilon":
            return out
        a = logsnr.to(self.device, torch.float32).reshape(-1, *([1] * len(self.data_shape)))
        xa = x_a.to(self.device, torch.float32)
        if self.prediction_type == "v_prediction":
            return torch.sigmoid(-a).sqrt() * xa + torch.sigmoid(a).sqrt() * out
        return (xa - torch.sigmoid(a).sqrt() * out) / torch.sigmoid(-a).sqrt()

    # ----- images -------------------------------------------------------------------------
    def _vae_call(self, fn):
        """``fn(vae)`` without gradients, upcast as the VAE asks (:func:`~diffpid.models.images.vae_call`)."""
        return vae_call(self.vae, fn)

    def _vae_device(self) -> torch.device:
        return self.device if self.pipeline is not None else next(self.vae.parameters()).device

    def encode_image(self, image: Any, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image(s) to model data ``(b, *data_shape)`` float32 (CPU).

        Args:
            image: a path, PIL image, array or tensor (see :func:`diffpid.models.images.to_rgb`),
                or a list of them; converted to RGB and resized to :attr:`resolution`.
            sample: draw a latent from the VAE posterior instead of taking its mean.
            generator: randomness for ``sample``.
        """
        if isinstance(image, (list, tuple)):
            return torch.cat([self.encode_image(im, sample, generator) for im in image])
        pixels = image_tensor(image, self.resolution)  # (1, 3, H, W) in [-1, 1]
        if self.vae is None:
            return pixels
        cfg = self.vae.config

        def run(vae):
            dist = vae.encode(pixels.to(self._vae_device(), vae.dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mean
            return z.float().cpu()

        z = self._vae_call(run)
        shift = cfg.get("shift_factor", None) or 0.0
        return (z - shift) * cfg.scaling_factor

    def decode(self, x: torch.Tensor):
        """Data ``(n, *data_shape)`` to ``(n, H, W, 3)`` uint8 images."""
        x = self.check_x(x)
        if self.vae is None:
            return to_uint8(x)
        cfg = self.vae.config
        z = x.float() / cfg.scaling_factor + (cfg.get("shift_factor", None) or 0.0)
        return to_uint8(self._vae_call(lambda vae: vae.decode(z.to(self._vae_device(), vae.dtype)).sample))

    # ----- generation ---------------------------------------------------------------------
    def generate(self, prompt: str, seed: int = 0, steps: int | None = None, guidance_scale: float | None = None,
                 negative_prompt: str = "", scheduler: str | None = None, progress: bool = False) -> Generated:
        """Generate one image for ``prompt``, reproducible from ``seed`` (CPU generator).

        Defaults come from :attr:`generation` (50 DDIM steps at guidance 7.5 unless the
        model folder's ``generation.json`` says otherwise).

        Args:
            prompt: the prompt.
            seed: the random seed.
            steps: sampling steps.
            guidance_scale: classifier-free guidance scale (1 turns guidance off).
            negative_prompt: the prompt guidance steers away from.
            progress: show a progress bar over the generation steps.
            scheduler: ``"ddim"`` (deterministic) or ``"ddpm"`` (ancestral) for component
                folders; a pipeline samples with its own scheduler.
        """
        self._check_prompt(prompt)
        steps = self.generation["steps"] if steps is None else steps
        guidance_scale = self.generation["guidance_scale"] if guidance_scale is None else guidance_scale
        scheduler = self.generation["scheduler"] if scheduler is None else scheduler
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ParameterError(f"steps must be a positive integer, got {steps!r}")
        if scheduler not in GENERATION_SCHEDULERS:
            raise ParameterError(f"scheduler must be one of {GENERATION_SCHEDULERS}, got {scheduler!r}")
        g = torch.Generator("cpu").manual_seed(int(seed))
        if self.pipeline is not None:
            h, w = self.resolution
            with torch.no_grad(), pipeline_progress(self.pipeline, progress):
                x = self.pipeline(prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps,
                                  guidance_scale=guidance_scale, generator=g, height=h, width=w,
                                  output_type="latent").images
        else:
            x = self._sample(prompt, g, steps, float(guidance_scale), negative_prompt, scheduler, progress)
        x = x.float().cpu()
        return Generated(self.decode(x)[0], x, prompt, int(seed))

    def _sample(self, prompt: str, g: torch.Generator, steps: int, guidance: float, negative: str,
                scheduler: str = "ddim", progress: bool = False) -> torch.Tensor:
        """DDIM (eta 0) or ancestral DDPM with classifier-free guidance for component-only models.

        The initial noise and (for DDPM) every step's noise come from ``g`` in that order.
        """
        from diffusers import DDIMScheduler, DDPMScheduler

        sched = (DDPMScheduler if scheduler == "ddpm" else DDIMScheduler).from_config(self.scheduler.config)
        sched.set_timesteps(steps)
        conds = [self.encode_prompt(prompt), self.encode_prompt(negative)]
        x = torch.randn((1, *self.data_shape), generator=g) * sched.init_noise_sigma
        kw = {"generator": g} if scheduler == "ddpm" else {}
        for t in tqdm(sched.timesteps, desc=f"{self.name}: generating", unit="step", disable=not progress):
            out = self._unet(x, t.reshape(1), conds)[0]  # (2, *shape)
            pred = out[1] + guidance * (out[0] - out[1])
            x = sched.step(pred[None].cpu(), t, x, **kw).prev_sample
        return x

