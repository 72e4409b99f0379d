"""The Flux group of flow pipelines: Flux.1 (:class:`FluxModel`), Chroma (:class:`ChromaModel`, Flux.1's
layout with T5 only), Flux.2 (:class:`Flux2Model`) and Flux.2 Klein (:class:`Flux2KleinModel`).

Latents are packed into 2x2 patches and joint attention runs over ``[text, image]``; the families, their
registry and what each one says about its transformer are described in :mod:`diffpid.models.flow_families`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..prompts import Token, tokens_of
from .flow_pipeline import FlowPipelineModel, _patchify, _unpatchify, pack_2x2, unpack_2x2


class FluxModel(FlowPipelineModel):
    """Flux.1 dev / schnell (``FluxPipeline``): 2x2-packed latents, timestep ``t``, text = T5 over
    ``[text, image]``, pooled CLIP; the guidance embedding (dev) gets :attr:`guidance` for every condition."""

    family = "flux"
    pipeline_classes = ("FluxPipeline",)

    def _defaults(self) -> dict[str, Any]:
        d = super()._defaults()
        if not self.transformer.config.get("guidance_embeds", False):  # schnell: 4 steps, no guidance, 256 tokens
            d.update(steps=4, guidance_scale=0.0, max_sequence_length=256)
        return d

    def _long_tokenizer_limit(self) -> int:
        return int(self.pipeline.tokenizer_2.model_max_length)

    def _limits(self):
        p = self.pipeline
        return [("CLIP", p.tokenizer, int(p.tokenizer_max_length)), ("T5", p.tokenizer_2, self.max_sequence_length)]

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """T5's tokens: they are the text sequence of the joint attention (CLIP only gives the pooled vector)."""
        return tokens_of(prompt, self.pipeline.tokenizer_2)

    def _encode(self, prompt: str):
        emb, pooled, _ = self.pipeline.encode_prompt(prompt=prompt, prompt_2=None, device=self.device,
                                                     num_images_per_prompt=1,
                                                     max_sequence_length=self.max_sequence_length)
        return emb[0], pooled[0]

    def _position_ids(self, h: int, w: int, text_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flux's rotary position ids: ``(h/2 * w/2, 3)`` image ids (row, column) and zero text ids."""
        ids = torch.zeros(h // 2, w // 2, 3)
        ids[..., 1] += torch.arange(h // 2)[:, None]
        ids[..., 2] += torch.arange(w // 2)[None, :]
        return (ids.reshape(-1, 3).to(self.device, self.dtype),
                torch.zeros(text_length, 3, device=self.device, dtype=self.dtype))

    def _forward(self, rows, timestep, emb, pooled, mask=None):
        n, _, h, w = rows.shape
        img_ids, txt_ids = self._position_ids(h, w, emb.shape[1])
        out = self.transformer(hidden_states=pack_2x2(rows), timestep=timestep, guidance=self._guidance(n),
                               pooled_projections=pooled, encoder_hidden_states=emb, txt_ids=txt_ids,
                               img_ids=img_ids, return_dict=False)[0]
        return unpack_2x2(out, h, w)

    def _from_pipeline_latents(self, latents):
        return unpack_2x2(latents, *self.data_shape[1:])


class Flux2Model(FlowPipelineModel):
    """Flux.2 (``Flux2Pipeline``): patchified latents normalised by the VAE's batch norm, packed;
    timestep ``t``; text = the Mistral encoder's layers (10, 20, 30) over the chat template."""

    family = "flux2"
    pipeline_classes = ("Flux2Pipeline",)
    text_layers: tuple[int, ...] = (10, 20, 30)

    def _long_tokenizer_limit(self) -> int:
        return int(getattr(self._tokenizer(), "model_max_length", 512))

    def _tokenizer(self):
        tok = self.pipeline.tokenizer
        return getattr(tok, "tokenizer", tok)  # a PixtralProcessor holds the tokenizer

    add_special_tokens = False
    """Whether the encoder's tokenizer call adds special tokens to the rendered template."""

    def _render(self, prompt: str) -> str:
        from diffusers.pipelines.flux2.pipeline_flux2 import format_input

        messages = format_input(prompts=[prompt], system_message=self.pipeline.system_message)[0]
        return self.pipeline.tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)

    def _chat(self, prompt: str) -> tuple[str, int]:
        """The chat-template text the encoder reads and the character offset of the prompt in it."""
        text = self._render(prompt)
        clean = prompt.replace("[IMG]", "")
        at = text.rfind(clean) if clean else len(text)
        return text, at

    def _count(self, tokenizer, prompt):
        text, _ = self._chat(prompt)
        return len(tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"])

    def _limits(self):
        return [("chat-template", self._tokenizer(), self.max_sequence_length)]

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """The chat template's tokens (system message included); those inside the prompt get its offsets,
        every other token is flagged special."""
        text, at = self._chat(prompt)
        tok = self._tokenizer()
        enc = tok(text, add_special_tokens=self.add_special_tokens, return_offsets_mapping=True)
        names = tok.convert_ids_to_tokens(enc["input_ids"])
        end = at + len(prompt.replace("[IMG]", ""))
        out = []
        for i, (name, (s, e)) in enumerate(zip(names, enc["offset_mapping"])):
            inside = s < e and s >= at and e <= end
            out.append(Token(i, name, s - at if inside else 0, e - at if inside else 0, not inside))
        return tuple(out)

    def _encode(self, prompt: str):
        emb, _ = self.pipeline.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                             max_sequence_length=self.max_sequence_length,
                                             text_encoder_out_layers=self.text_layers)
        return emb[0], None

    def _forward(self, rows, timestep, emb, pooled, mask=None):
        n, c, h, w = rows.shape
        coords = torch.cartesian_prod(torch.arange(1), torch.arange(h // 2), torch.arange(w // 2), torch.arange(1))
        img_ids = coords[None].expand(n, -1, -1).to(self.device)
        txt = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(emb.shape[1]))
        txt_ids = txt[None].expand(n, -1, -1).to(self.device)
        out = self.transformer(hidden_states=pack_2x2(rows), timestep=timestep, guidance=self._guidance(n),
                               encoder_hidden_states=emb, txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        return unpack_2x2(out, h, w)

    def _bn(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn, eps = self.vae.bn, self.vae.config.batch_norm_eps
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, torch.float32)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1).to(like.device, torch.float32) + eps)
        return mean, std

    def _latent_to_data(self, z):
        p = _patchify(z)
        mean, std = self._bn(p)
        return _unpatchify((p - mean) / std)

    def _data_to_latent(self, x):
        p = _patchify(x)
        mean, std = self._bn(p)
        return _unpatchify(p * std + mean)

    def _call_kwargs(self):
        return {"max_sequence_length": self.max_sequence_length, "text_encoder_out_layers": self.text_layers}

    def _from_pipeline_latents(self, latents):
        return unpack_2x2(latents, *self.data_shape[1:])


class Flux2KleinModel(Flux2Model):
    """Flux.2 klein (``Flux2KleinPipeline``): Flux.2's latents and call without a guidance embedding;
    text = Qwen3 layers (9, 18, 27) over its chat template (user turn, generation prompt, no thinking)."""

    family = "flux2-klein"
    pipeline_classes = ("Flux2KleinPipeline",)
    text_layers = (9, 18, 27)
    add_special_tokens = True  # the pipeline tokenizes the rendered template with the default

    def __init__(self, pipe: Any, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(pipe, name, **kwargs)
        self.guidance = None  # the pipeline passes guidance=None (true classifier-free guidance only)

    def _render(self, prompt: str) -> str:
        return self.pipeline.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                           add_generation_prompt=True, enable_thinking=False)

    def _chat(self, prompt: str) -> tuple[str, int]:
        text = self._render(prompt)
        return text, (text.rfind(prompt) if prompt else len(text))

    def _from_pipeline_latents(self, latents):
        """Klein returns the VAE latent (batch norm undone, unpatchified): normalise it back."""
        return self._latent_to_data(latents.float())


class ChromaModel(FluxModel):
    """Chroma (``ChromaPipeline``): Flux.1's packing and timestep, T5 only (no pooled vector, no
    guidance embedding), and a text mask: every T5 padding token but the first is masked out."""

    family = "chroma"
    pipeline_classes = ("ChromaPipeline",)

    def _defaults(self) -> dict[str, Any]:
        return FlowPipelineModel._defaults(self)

    def _long_tokenizer_limit(self) -> int:
        return int(self.pipeline.tokenizer.model_max_length)

    def _limits(self):
        return [("T5", self.pipeline.tokenizer, self.max_sequence_length)]

    def tokenize(self, prompt: str) -> tuple[Token, ...]:
        """T5's tokens (the text sequence of the joint attention)."""
        return tokens_of(prompt, self.pipeline.tokenizer)

    def _encode(self, prompt: str):
        out = self.pipeline.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=False,
                                          max_sequence_length=self.max_sequence_length)
        return out[0][0], None, out[2][0]

    def _forward(self, rows, timestep, emb, pooled, mask=None):
        n, _, h, w = rows.shape
        img_ids, txt_ids = self._position_ids(h, w, emb.shape[1])
        # the text mask extended over the image tokens, as the pipeline does
        mask = torch.cat([mask, torch.ones(n, (h // 2) * (w // 2), device=mask.device, dtype=torch.bool)], dim=1)
        out = self.transformer(hidden_states=pack_2x2(rows), timestep=timestep, encoder_hidden_states=emb,
                               txt_ids=txt_ids, img_ids=img_ids, attention_mask=mask, return_dict=False)[0]
        return unpack_2x2(out, h, w)
