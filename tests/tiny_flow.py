"""Tiny random-weight flow-matching pipelines for offline tests, built from configs.

Shaped like diffusers' own pipeline tests (random weights, tokenizers built locally):

- :func:`sd3_pipeline`: ``StableDiffusion3Pipeline``: two CLIP encoders with projection
  (:func:`tiny_pipelines.clip_tokenizer` vocabulary), a T5 encoder with a T5-style
  Unigram tokenizer (:func:`t5_tokenizer`), ``SD3Transformer2DModel`` with patch 2,
  ``AutoencoderKL`` with SD3's scaling and shift factors, the shift-3 scheduler.
- :func:`flux_pipeline`: ``FluxPipeline``: CLIP pooled + T5, ``FluxTransformer2DModel``
  with (``guidance=True``, Flux.1-dev style) or without (schnell) the guidance embedding,
  dynamic-shift scheduler, Flux's VAE factors.
- :func:`flux2_pipeline`: ``Flux2Pipeline``: a 30-layer tiny ``Mistral3ForConditionalGeneration``
  (the pipeline reads hidden layers 10, 20 and 30) with a word-level tokenizer that has a
  chat template, ``Flux2Transformer2DModel``, ``AutoencoderKLFlux2`` with set batch-norm statistics.
- :func:`flux2_klein_pipeline`: ``Flux2KleinPipeline``: a 27-layer tiny Qwen3 encoder with
  Qwen3's chat template, Flux.2's transformer without the guidance embedding.
- :func:`chroma_pipeline`: ``ChromaPipeline``: T5 only, ``ChromaTransformer2DModel``.
- :func:`qwenimage_pipeline`: ``QwenImagePipeline``: a tiny Qwen2.5-VL with a word-level tokenizer
  under which the prompt template's system turn is the 34 tokens the pipeline drops.

Every pipeline makes 32x32 images from ``(4, 16, 16)`` latents (16 packed Flux channels).
Folders are saved once per session (:func:`flow_folder`, with a ``generation.json`` of
small defaults so that generation stays fast); :data:`FAMILIES` names them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from tiny_pipelines import WORDS, _root, clip_tokenizer, text_encoder

IMAGE = 32
T5_DIM = 64
T5_MAX = 32
FAMILIES = ("sd3", "flux-dev", "flux-schnell", "flux2", "flux2-klein", "chroma", "qwenimage")
SYSTEM_WORDS = ("you", "are", "ai", "that", "reasons", "about", "image", "descriptions", "give", "structured",
                "responses", "focusing", "object", "relationships", "attribution", "actions", "without",
                "speculation", "on", "and", "a", "an")
GENERATION = {"steps": 2, "resolution": IMAGE}
"""Generation defaults written into every saved folder (``generation.json``)."""


def velocity_from_eps(x_t, t, eps):
    """Inverse of :func:`diffpid.models.flow.eps_from_velocity`: ``v = (eps - x_t) / (1-t)`` (``t`` per batch row)."""
    return (eps - x_t) / (1 - t.to(eps.dtype)).reshape(-1, *([1] * (eps.dim() - 1)))


def t5_tokenizer(words=WORDS, max_length: int = T5_MAX):
    """A T5-style tokenizer (SentencePiece-like Unigram over ``▁word`` pieces and letters, ``</s>`` appended)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [("▁" + w, -1.0) for w in words]
    for c in "abcdefghijklmnopqrstuvwxyz0123456789,.'-":
        vocab += [(c, -5.0), ("▁" + c, -5.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=max_length)


def t5_encoder(vocab_size: int, seed: int = 0):
    """A one-layer ``T5EncoderModel`` of width :data:`T5_DIM`."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab_size, d_model=T5_DIM, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(cfg).eval()


def kl_vae(scaling: float, shift: float, seed: int = 0):
    """An ``AutoencoderKL`` 3 -> 4 channels, one downsampling, with the given scaling and shift factors."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, sample_size=IMAGE,
                         scaling_factor=scaling, shift_factor=shift).eval()


def sd3_pipeline(seed: int = 0):
    """A tiny ``StableDiffusion3Pipeline`` (``(4, 16, 16)`` latents, 64 image tokens)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    t5 = t5_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=IMAGE // 2, patch_size=2, in_channels=4, out_channels=4,
                                        num_layers=2, attention_head_dim=8, num_attention_heads=4,
                                        caption_projection_dim=32, joint_attention_dim=T5_DIM,
                                        pooled_projection_dim=64, pos_embed_max_size=16).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=kl_vae(1.5305, 0.0609, seed),
        text_encoder=text_encoder(True, seed=seed), tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder(True, seed=seed + 1), tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(len(t5), seed), tokenizer_3=t5,
    )


def flux_pipeline(guidance: bool = True, seed: int = 0):
    """A tiny ``FluxPipeline``; ``guidance=True`` is Flux.1-dev-shaped (guidance embedding), False schnell-shaped."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    t5 = t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_DIM,
                                         pooled_projection_dim=32, guidance_embeds=guidance,
                                         axes_dims_rope=[4, 4, 8]).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0 if guidance else 1.0, use_dynamic_shifting=guidance,
                                                base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5,
                                                max_shift=1.15)
    return FluxPipeline(scheduler=scheduler, vae=kl_vae(0.3611, 0.1159, seed), text_encoder=text_encoder(seed=seed),
                        tokenizer=clip_tokenizer(), text_encoder_2=t5_encoder(len(t5), seed), tokenizer_2=t5,
                        transformer=transformer)


CHAT_TEMPLATE = ("<s>{% for m in messages %}{% if m['role'] == 'system' %}[SYSTEM_PROMPT]"
                 "{{ m['content'][0]['text'] }}[/SYSTEM_PROMPT]{% else %}[INST]{{ m['content'][0]['text'] }}"
                 "[/INST]{% endif %}{% endfor %}")


def chat_tokenizer(max_length: int = 64):
    """A word-level Mistral-style tokenizer with a chat template (system and user turns)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "[IMG]", "<s>", "</s>", "<pad>", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[INST]", "[/INST]"]
    vocab = {s: i for i, s in enumerate(special)}
    for w in (*WORDS, *SYSTEM_WORDS, ".", ","):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", model_max_length=max_length)
    out.chat_template = CHAT_TEMPLATE
    return out


def mistral_encoder(vocab_size: int, seed: int = 0):
    """A tiny 30-layer ``Mistral3ForConditionalGeneration`` (width 16) as diffusers' Flux.2 tests build it."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    cfg = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": vocab_size, "hidden_size": 16, "intermediate_size": 24,
                     "max_position_embeddings": 512, "num_attention_heads": 4, "num_hidden_layers": 30,
                     "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 1e9, "sliding_window": None,
                     "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 4, "head_dim": 4},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 4,
                       "intermediate_size": 24, "image_size": 30, "patch_size": 6, "num_channels": 3},
        bos_token_id=2, eos_token_id=3, pad_token_id=4, image_seq_length=4, vision_feature_layer=-1,
        image_token_index=1,
    )
    torch.manual_seed(seed)
    return Mistral3ForConditionalGeneration(cfg).eval()


def flux2_pipeline(seed: int = 0):
    """A tiny ``Flux2Pipeline`` (text width 3 x 16 = 48 from layers 10, 20, 30)."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel

    tok = chat_tokenizer()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4]).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                             latent_channels=4, norm_num_groups=4, sample_size=IMAGE, use_quant_conv=False,
                             use_post_quant_conv=False).eval()
    g = torch.Generator().manual_seed(seed)
    vae.bn.running_mean.copy_(0.3 * torch.randn(16, generator=g))
    vae.bn.running_var.copy_(0.5 + torch.rand(16, generator=g))
    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True), vae=vae,
                         text_encoder=mistral_encoder(len(tok.get_vocab()), seed), tokenizer=tok,
                         transformer=transformer)


QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
                 "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def qwen_tokenizer(max_length: int = 32):
    """A word-level Qwen-style tokenizer with Qwen3's chat template (user turn, generation prompt)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab = {s: i for i, s in enumerate(special)}
    for w in (*WORDS, "user", "assistant", ".", ","):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token="<unk>", model_max_length=max_length)
    out.chat_template = QWEN_TEMPLATE
    return out


def flux2_klein_pipeline(seed: int = 0):
    """A tiny ``Flux2KleinPipeline``: a 27-layer Qwen3 encoder of width 16 (layers 9, 18, 27 read), no guidance."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    base = flux2_pipeline(seed)
    tok = qwen_tokenizer()
    torch.manual_seed(seed)
    enc = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok.get_vocab()), hidden_size=16, intermediate_size=24,
                                       num_hidden_layers=27, num_attention_heads=4, num_key_value_heads=2,
                                       head_dim=4, max_position_embeddings=512)).eval()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
                                          guidance_embeds=False).eval()
    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
                              vae=base.vae, text_encoder=enc, tokenizer=tok, transformer=transformer)


def chroma_pipeline(seed: int = 0):
    """A tiny ``ChromaPipeline`` (T5 only, Flux.1's packing)."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    t5 = t5_tokenizer()
    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_DIM,
                                           axes_dims_rope=[4, 4, 8], approximator_num_channels=8,
                                           approximator_hidden_dim=32, approximator_layers=1).eval()
    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=kl_vae(0.3611, 0.1159, seed),
                          text_encoder=t5_encoder(len(t5), seed), tokenizer=t5, transformer=transformer)


QWEN_SPECIAL = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>"]
QWEN_WORDS = ("system", "describe", "image", "by", "detailing", "color", "shape", "size", "texture", "quantity",
              "text", "spatial", "relationships", "objects", "background", "user", "assistant")


def qwen_vl_tokenizer(max_length: int = 64):
    """A word-level Qwen-style tokenizer (newlines are tokens) under which Qwen-Image's prompt
    template has the 34 system-turn tokens the pipeline drops, as with the real tokenizer."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {s: i for i, s in enumerate(QWEN_SPECIAL)}
    for w in (*QWEN_WORDS, *WORDS, "\n", ",", ":", "."):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\n"), "isolated"), pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"),
        pre_tokenizers.Punctuation("isolated")])
    tok.add_special_tokens(QWEN_SPECIAL)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<unk>", model_max_length=max_length)


def qwenimage_pipeline(seed: int = 0):
    """A tiny ``QwenImagePipeline`` (Qwen2.5-VL of width 16, ``AutoencoderKLQwenImage`` with one 2x downsampling)."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = qwen_vl_tokenizer()
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=1,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4)).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
                                 latents_mean=[0.1, -0.2, 0.05, 0.3], latents_std=[1.5, 0.8, 1.2, 2.0]).eval()
    ids = {s: i for i, s in enumerate(QWEN_SPECIAL)}
    cfg = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tok.get_vocab()),
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1e6},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tok.get_vocab()), vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], vision_token_id=ids["<|image_pad|>"],
        image_token_id=ids["<|image_pad|>"])
    torch.manual_seed(seed)
    enc = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    return QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
                             vae=vae, text_encoder=enc, tokenizer=tok, transformer=transformer)


def flow_pipeline(family: str, seed: int = 0):
    """The tiny pipeline of ``family`` (one of :data:`FAMILIES`)."""
    if family == "sd3":
        return sd3_pipeline(seed)
    if family in ("flux-dev", "flux-schnell"):
        return flux_pipeline(family == "flux-dev", seed)
    if family == "flux2":
        return flux2_pipeline(seed)
    if family == "chroma":
        return chroma_pipeline(seed)
    if family == "flux2-klein":
        return flux2_klein_pipeline(seed)
    if family == "qwenimage":
        return qwenimage_pipeline(seed)
    raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")


@functools.lru_cache(maxsize=None)
def flow_folder(family: str) -> str:
    """Path of the saved tiny pipeline of ``family`` with a ``generation.json``, built once per session."""
    path = _root() / f"flow-{family}"
    pipe = flow_pipeline(family)
    pipe.save_pretrained(path)
    (Path(path) / "generation.json").write_text(json.dumps(GENERATION))
    return str(path)
