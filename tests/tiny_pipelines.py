"""Tiny random-weight diffusers pipelines for offline tests, built from configs.

Every builder is deterministic (``torch.manual_seed`` inside) and small enough that a
denoiser call takes milliseconds on one CPU thread:

- :func:`sd_pipeline`: Stable-Diffusion-shaped (CLIPTokenizer from a small byte-level BPE
  vocabulary, CLIPTextModel, UNet2DConditionModel with cross-attention, AutoencoderKL,
  DDPMScheduler with SD's ``scaled_linear`` betas). 32x32 images, ``(4, 16, 16)`` latents.
  ``prediction_type="v_prediction"`` gives the SD 2.x-style variant.
- :func:`sdxl_pipeline`: SDXL-shaped (two tokenizers and text encoders, the second
  with projection; ``addition_embed_type="text_time"``).
- :func:`save_pixel_folder`: a pixel-space component folder without a VAE, laid out like
  the embedded model (``model_index.json`` with a non-pipeline class, ``unet/``,
  ``text_encoder/``, word-level ``tokenizer/``, ``scheduler/``). Data ``(3, 16, 16)``.
- :func:`shapes_folder`: a small random-weight shapes model (the embedded model's
  architecture over the shapes world's vocabulary), for the shapes bench commands.

Folders are saved once per test session into a temporary directory: :func:`sd_folder`,
:func:`sd_v_folder`, :func:`sdxl_folder`, :func:`pixel_folder`, :func:`shapes_folder` return their
paths (cached), and the fixtures ``sd_path``, ``sd_v_path``, ``sdxl_path``, ``pixel_path``,
``shapes_path`` wrap them
(import the fixture names into a test module to use them).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

WORDS = ("a", "an", "the", "on", "in", "of", "and", "with", "cat", "dog", "red", "blue", "green",
         "big", "small", "photo", "sitting", "table", "bat", "ball", "man", "woman", "car", "tree")
"""Words that are single BPE tokens; any other word splits into several tokens."""

LATENT = 16
IMAGE = 32
HIDDEN = 32


def bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte-to-character table (the 256 base symbols of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def bpe_vocab(words=WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary (CLIP style, ``</w>`` word ends) with merges for ``words``."""
    base = bytes_to_unicode()
    vocab: dict[str, int] = {}
    for c in base:
        vocab[c] = len(vocab)
    for c in base:
        vocab[c + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for w in words:
        if len(w) == 1:
            continue
        cur = w[0]
        for i, ch in enumerate(w[1:]):
            nxt = ch + ("</w>" if i == len(w) - 2 else "")
            if (cur, nxt) not in merges:
                merges.append((cur, nxt))
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def clip_tokenizer(max_length: int = 77, words=WORDS):
    """A transformers ``CLIPTokenizer`` over :func:`bpe_vocab` (about 560 tokens)."""
    from transformers import CLIPTokenizer

    vocab, merges = bpe_vocab(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def text_encoder(projection: bool = False, hidden: int = HIDDEN, seed: int = 0, max_length: int = 77):
    """A 2-layer ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``), eos token = last vocab id."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab, _ = bpe_vocab()
    cfg = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=max_length, projection_dim=hidden,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
        hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)
    return model.eval()


def tiny_unet(in_channels: int = 4, sample_size: int = LATENT, cross_attention_dim: int = HIDDEN,
              sdxl: bool = False, seed: int = 0):
    """A ``UNet2DConditionModel`` with channels (8, 16) and cross-attention in both levels and the middle."""
    from diffusers import UNet2DConditionModel

    extra = {}
    if sdxl:
        extra = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + HIDDEN)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, **extra,
    )
    return unet.eval()


def tiny_vae(seed: int = 0):
    """An ``AutoencoderKL`` 3 -> 4 channels with one downsampling (32x32 images, 16x16 latents)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, sample_size=IMAGE,
    )
    return vae.eval()


def sd_scheduler(prediction_type: str = "epsilon"):
    """``DDPMScheduler`` with Stable Diffusion's betas (log-SNR range about [-5.36, 7.07])."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type=prediction_type, clip_sample=False,
                         steps_offset=1)


def sd_pipeline(prediction_type: str = "epsilon", seed: int = 0):
    """A tiny ``StableDiffusionPipeline`` (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=tiny_vae(seed), text_encoder=text_encoder(seed=seed), tokenizer=clip_tokenizer(),
        unet=tiny_unet(seed=seed), scheduler=sd_scheduler(prediction_type), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )


def sdxl_pipeline(seed: int = 0):
    """A tiny ``StableDiffusionXLPipeline``: two encoders of width 32, cross-attention width 64."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=tiny_vae(seed), text_encoder=text_encoder(seed=seed), text_encoder_2=text_encoder(True, seed=seed + 1),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(), unet=tiny_unet(cross_attention_dim=2 * HIDDEN,
                                                                                  sdxl=True, seed=seed),
        scheduler=sd_scheduler(), force_zeros_for_empty_prompt=False,
    )


def word_tokenizer(words=WORDS, max_length: int = 16):
    """A word-level ``PreTrainedTokenizerFast`` (lower-cased, BOS/EOS around, pads with EOS)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=max_length)


def save_pixel_folder(path: str | Path, seed: int = 0) -> Path:
    """Save a pixel-space model folder without a VAE (``(3, 16, 16)`` images in [-1, 1])."""
    from transformers import CLIPTextConfig, CLIPTextModel

    path = Path(path)
    tok = word_tokenizer()
    torch.manual_seed(seed)
    enc = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=37,
                                       num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                       bos_token_id=2, eos_token_id=3, pad_token_id=0)).eval()
    tok.save_pretrained(path / "tokenizer")
    enc.save_pretrained(path / "text_encoder")
    tiny_unet(in_channels=3, sample_size=16, seed=seed).save_pretrained(path / "unet")
    sd_scheduler().save_pretrained(path / "scheduler")
    index = {"_class_name": "TinyPixelModel", "_diffusers_version": "0.42.1",
             "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "DDPMScheduler"]}
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


@functools.lru_cache(maxsize=None)
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="diffpid-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.lru_cache(maxsize=None)
def sd_folder() -> str:
    """Path of a saved :func:`sd_pipeline` (epsilon prediction), built once per session."""
    path = _root() / "sd"
    sd_pipeline().save_pretrained(path)
    return str(path)


@functools.lru_cache(maxsize=None)
def sd_v_folder() -> str:
    """Path of a saved :func:`sd_pipeline` with ``v_prediction``."""
    path = _root() / "sd-v"
    sd_pipeline("v_prediction", seed=1).save_pretrained(path)
    return str(path)


@functools.lru_cache(maxsize=None)
def sdxl_folder() -> str:
    """Path of a saved :func:`sdxl_pipeline`."""
    path = _root() / "sdxl"
    sdxl_pipeline().save_pretrained(path)
    return str(path)


@functools.lru_cache(maxsize=None)
def pixel_folder() -> str:
    """Path of a saved :func:`save_pixel_folder`."""
    return str(save_pixel_folder(_root() / "pixel"))


@functools.lru_cache(maxsize=None)
def shapes_folder() -> str:
    """Path of a saved random-weight shapes model. Its text encoder is pinned to T5 so that
    the tests using it do not move with ``ShapesConfig``'s default."""
    from diffpid.shapes.model import ShapesConfig, build_components, save_components

    small = ShapesConfig(channels=(8, 16, 16), text_hidden=16, attention_head_dim=8, norm_groups=4, text_encoder="t5")
    return str(save_components(build_components(small), _root() / "shapes"))


@pytest.fixture(scope="session")
def sd_path() -> str:
    return sd_folder()


@pytest.fixture(scope="session")
def sd_v_path() -> str:
    return sd_v_folder()


@pytest.fixture(scope="session")
def sdxl_path() -> str:
    return sdxl_folder()


@pytest.fixture(scope="session")
def pixel_path() -> str:
    return pixel_folder()


@pytest.fixture(scope="session")
def shapes_path() -> str:
    return shapes_folder()
