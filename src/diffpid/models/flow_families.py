"""Diffusers rectified-flow pipelines behind the Model protocol: SD3 / SD3.5, Flux.1, Flux.2, Chroma.

:class:`FlowPipelineModel` wraps a pipeline whose denoiser is a flow-matching transformer
(``FlowMatchEulerDiscreteScheduler``); the channel bridge is :class:`~diffpid.models.flow.FlowMatchingModel`.
One subclass per family says how the transformer is called:

- :class:`SD3Model` (``StableDiffusion3Pipeline``): latents go in as ``(n, C, h, w)``, the
  timestep is ``1000 t``; text = two CLIP encoders (penultimate states, 77 tokens, padded
  to the T5 width) followed by T5 (``max_sequence_length`` tokens), pooled = both CLIP
  projections. Joint attention runs over ``[image, text]``.
- :class:`FluxModel` (``FluxPipeline``): 16-channel latents packed into 2x2 patches
  (``img_ids``, zero ``txt_ids``), the timestep is ``t`` (the model multiplies by 1000);
  text = T5, pooled = CLIP. Flux.1-dev (``guidance_embeds``) takes the distilled guidance
  value as an input: every condition, the empty prompt included, gets the same value
  (:attr:`FlowPipelineModel.guidance`). Joint attention runs over ``[text, image]``.
- :class:`Flux2Model` (``Flux2Pipeline``): the VAE latent is patchified, normalised by the
  VAE's batch-norm statistics and packed; text = hidden layers (10, 20, 30) of the
  Mistral encoder over the pipeline's chat template (system message + prompt).
- :class:`Flux2KleinModel` (``Flux2KleinPipeline``): Flux.2 with a Qwen3 encoder, no guidance embedding.
- :class:`ChromaModel` (``ChromaPipeline``): Flux.1's layout with T5 only and a text mask.
- :class:`QwenImageModel` (``QwenImagePipeline``): Flux-style packing of a latent normalised by
  per-channel statistics; Qwen2.5-VL text at each prompt's own length.

The data ``x`` the engine sees is always on the unpacked latent grid ``(C, H/8, W/8)``
(Flux.2: the normalised latent, unpatchified), so pixel maps come back at that grid.

What every family shares (encoding, caching, limits, the batched call, VAE, generation)
is :class:`~diffpid.models.flow_pipeline.FlowPipelineModel`. SD3 and Qwen-Image live here with the
registry (:func:`flow_model_class`); the Flux group (Flux.1, Chroma, Flux.2, Flux.2 Klein) in
:mod:`diffpid.models.flow_flux`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ParameterError
from ..prompts import Token, tokens_of
from .flow_flux import ChromaModel, Flux2KleinModel, Flux2Model, FluxModel
from .flow_pipeline import (GENERATION_KEYS, FlowCondition, FlowPipelineModel, _call_defaults, _offset,
                            check_flow_generation, pack_2x2, unpack_2x2)
from .images import image_tensor, to_uint8

__all__ = ["FLOW_PIPELINES", "GENERATION_KEYS", "ChromaModel", "FlowCondition", "FlowPipelineModel", "Flux2KleinModel",
           "Flux2Model", "FluxModel", "QwenImageModel", "SD3Model", "check_flow_generation", "flow_model_class",
           "pack_2x2", "unpack_2x2"]


class SD3Model(FlowPipelineModel):
    """Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): MM-DiT over ``[image, text]``,
    timestep ``1000 t``; text = ``[CLIP-L + CLIP-G (77 tokens), T5 (max_sequence_length)]``."""

    family = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    timestep_scale = 1000.0

    def _defaults(self) -> dict[str, Any]:
        d = super()._defaults()
        d["resolution"] = int(self.transformer.config.sample_size) * self.vae_scale_factor
        return d

    def _check_resolution(self, res: tuple[int, int]) -> tuple[int, int]:
        m = self.vae_scale_factor * int(self.transformer.config.patch_size)
        if res[0] % m or res[1] % m:
            raise ParameterError(f"{self.name} needs image sizes that are multiples of {m}, got {res[0]}x{res[1]}")
        return res

    def _data_shape(self) -> tuple[int, ...]:
        h, w = (r // self.vae_scale_factor for r in self.resolution)
        return (int(self.vae.config.latent_channels), h, w)

    def token_grid(self) -> tuple[int, int]:
        p = int(self.transformer.config.patch_size)
        return (self.data_shape[1] // p, self.data_shape[2] // p)

    def _long_tokenizer_limit(self) -> int:
        tok = self.pipeline.tokenizer_3
        return int(tok.model_max_length) if tok is not None else 10**9

    def _limits(self):
        p = self.pipeline
        clip = int(p.tokenizer_max_length)
        out = [("CLIP", p.tokenizer, clip), ("CLIP-G", p.tokenizer_2, clip)]
        if p.text_encoder_3 is not None:
            out.append(("T5", p.tokenizer_3, self.max_sequence_length))
        return out

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """CLIP-L tokens at positions 0..76 (CLIP-L and CLIP-G are concatenated per position, so one
        position carries both), then T5's tokens after the 77 CLIP positions."""
        p = self.pipeline
        tokens = list(tokens_of(prompt, p.tokenizer))
        if p.text_encoder_3 is not None:
            tokens += _offset(tokens_of(prompt, p.tokenizer_3), int(p.tokenizer_max_length))
        return tuple(tokens)

    def _encode(self, prompt: str):
        out = self.pipeline.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None, device=self.device,
                                          num_images_per_prompt=1, do_classifier_free_guidance=False,
                                          max_sequence_length=self.max_sequence_length)
        return out[0][0], out[2][0]

    def _forward(self, rows, timestep, emb, pooled, mask=None):
        return self.transformer(hidden_states=rows, timestep=timestep, encoder_hidden_states=emb,
                                pooled_projections=pooled, return_dict=False)[0]


class QwenImageModel(FlowPipelineModel):
    """Qwen-Image (``QwenImagePipeline``): 2x2-packed latents normalised by the VAE's per-channel
    ``latents_mean`` / ``latents_std``, timestep ``t``; text = the last hidden layer of Qwen2.5-VL over
    the pipeline's prompt template with its first ``prompt_template_encode_start_idx`` tokens (the
    system turn) dropped, each prompt at its own length (masked padding when batched). Generation's
    ``guidance_scale`` is the pipeline's ``true_cfg_scale`` against the negative prompt ``" "``."""

    family = "qwenimage"
    pipeline_classes = ("QwenImagePipeline",)

    def _defaults(self) -> dict[str, Any]:
        d = super()._defaults()
        call = _call_defaults(self.pipeline)
        d["guidance_scale"] = float(call.get("true_cfg_scale", 4.0))  # Qwen-Image's CFG is true_cfg_scale
        return d

    def _data_shape(self) -> tuple[int, ...]:
        h, w = (r // self.vae_scale_factor for r in self.resolution)
        return (int(self.vae.config.z_dim), h, w)

    def _template(self, prompt: str) -> tuple[str, int, int]:
        """The text the encoder reads, the prompt's character offset in it, and the dropped tokens."""
        template = self.pipeline.prompt_template_encode
        return template.format(prompt), template.index("{}"), int(self.pipeline.prompt_template_encode_start_idx)

    def _count(self, tokenizer, prompt):
        text, _, drop = self._template(prompt)
        return len(tokenizer(text)["input_ids"]) - drop

    def _long_tokenizer_limit(self) -> int:
        return int(self.pipeline.tokenizer.model_max_length)

    def _limits(self):
        return [("Qwen2.5-VL", self.pipeline.tokenizer, self.max_sequence_length)]

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """The template's tokens after the dropped system turn; those inside the prompt get its offsets."""
        text, at, drop = self._template(prompt)
        tok = self.pipeline.tokenizer
        enc = tok(text, return_offsets_mapping=True)
        names = tok.convert_ids_to_tokens(enc["input_ids"])
        end, out = at + len(prompt), []
        for i, (name, (s, e)) in enumerate(zip(names, enc["offset_mapping"])):
            if i < drop:
                continue
            inside = s < e and s >= at and e <= end
            out.append(Token(i - drop, name, s - at if inside else 0, e - at if inside else 0, not inside))
        return tuple(out)

    def _encode(self, prompt: str):
        emb, mask = self.pipeline.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                                max_sequence_length=self.max_sequence_length)
        emb = emb[0]
        mask = torch.ones(len(emb), dtype=torch.long) if mask is None else mask.reshape(-1)
        return emb, None, mask

    def _forward(self, rows, timestep, emb, pooled, mask=None):
        n, _, h, w = rows.shape
        if mask is not None and bool(mask.bool().all()):
            mask = None  # as the pipeline passes it for one unpadded prompt
        out = self.transformer(hidden_states=pack_2x2(rows), timestep=timestep, guidance=self._guidance(n),
                               encoder_hidden_states_mask=mask, encoder_hidden_states=emb,
                               img_shapes=[[(1, h // 2, w // 2)]] * n, return_dict=False)[0]
        return unpack_2x2(out, h, w)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def _latent_to_data(self, z):
        z = z[:, :, 0] if z.dim() == 5 else z  # (n, C, 1, h, w): one frame
        mean, std = self._stats(z)
        return (z - mean) / std

    def _data_to_latent(self, x):
        mean, std = self._stats(x)
        return (x * std + mean)[:, :, None]

    def encode_image(self, image, sample=False, generator=None):
        if isinstance(image, (list, tuple)):
            return torch.cat([self.encode_image(im, sample, generator) for im in image])
        pixels = image_tensor(image, self.resolution)[:, :, None]  # (1, 3, 1, H, W)

        def run(vae):
            dist = vae.encode(pixels.to(self._vae_device(), vae.dtype)).latent_dist
            return (dist.sample(generator) if sample else dist.mean).float()

        return self._latent_to_data(self._vae_call(run)).cpu()

    def decode(self, x):
        x = self.check_x(x)
        z = self._data_to_latent(x.float().to(self._vae_device()))
        return to_uint8(self._vae_call(lambda vae: vae.decode(z.to(vae.dtype)).sample[:, :, 0].float().cpu()))

    def _pipeline_call(self, prompt, steps, guidance_scale, g, h, w):
        return self.pipeline(prompt=prompt, negative_prompt=" ", true_cfg_scale=guidance_scale,
                             num_inference_steps=steps, generator=g, height=h, width=w, output_type="latent",
                             max_sequence_length=self.max_sequence_length).images

    def _from_pipeline_latents(self, latents):
        return unpack_2x2(latents, *self.data_shape[1:])


FAMILY_CLASSES = (SD3Model, FluxModel, Flux2Model, Flux2KleinModel, ChromaModel, QwenImageModel)
FLOW_PIPELINES = tuple(name for cls in FAMILY_CLASSES for name in cls.pipeline_classes)
"""Pipeline classes served by the flow-matching backend."""


def flow_model_class(pipeline_class: str):
    """The :class:`FlowPipelineModel` subclass for a pipeline class name, or ``None``."""
    for cls in FAMILY_CLASSES:
        if pipeline_class in cls.pipeline_classes:
            return cls
    return None
