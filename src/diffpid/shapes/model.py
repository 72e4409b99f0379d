"""The embedded shapes model: a small pixel-space text-to-image diffusion model.

Parts are the field's own: a word-level ``PreTrainedTokenizerFast`` over the shapes
world's vocabulary (padded to a fixed length, as Stable Diffusion does), a small
bidirectional ``BertModel`` (the encoder of Latent Diffusion; parse pretrained and frozen,
see :mod:`diffpid.shapes.training.parse`) whose last hidden state is the condition, a
``UNet2DConditionModel`` that also reads pixel coordinates
(:class:`~diffpid.shapes.coord_unet.CoordUNet2DConditionModel`, why: see that module)
with cross-attention at 16x16 and 8x8, and a cosine ``DDPMScheduler`` (epsilon
prediction, log-SNR from -19.8 to 10.1). Images are ``(3, 32, 32)`` in [-1, 1].

The folder layout is diffusers' (``model_index.json``, ``unet/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``; no ``vae``), so :func:`diffpid.models.diffusers.load_model`
reads it like any pixel-space pipeline folder. The trained weights ship in
``diffpid/assets/shapes``.

Why T5 and not CLIP: CLIP's text transformer is causal, so the tokens of the first object
of "a red circle left of a blue box" cannot know the relation that follows them. A
pixel's cross-attention query depends on the image alone, so with a causal encoder the
first object's keys cannot say "I am the left one" and binding colour and shape to a
place takes two hops across layers; the model trained that way (13,000 steps) drew single
objects well (94%) but bound attributes and relations at chance. A bidirectional encoder
puts the whole caption into every token. ``text_encoder="clip"`` still builds the old
architecture (and older checkpoints load as CLIP).

Why a parse-pretrained encoder: bidirectional encoders (T5, BERT, with or without a
pooled-text embedding) trained jointly with the UNet still left it blind to word order
within thousands of steps (layout-probe binding 0.000). An encoder first taught each
token's role, meaning and the side of the image its object goes to, then frozen, moved
binding within 600 UNet steps, and the held-out pass rate from 16.5% to the figure in the
README.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import ModelLoadError, ParameterError
from .world import VOCABULARY, check_caption

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
TEXT_ENCODERS = {"t5": "T5EncoderModel", "clip": "CLIPTextModel", "bert": "BertModel"}
"""``ShapesConfig.text_encoder`` to the transformers class it builds."""


@dataclass(frozen=True)
class ShapesConfig:
    """Architecture of the shapes model.

    Args:
        channels: UNet channels per resolution (32, 16, 8 pixels).
        layers_per_block: ResNet layers per UNet block.
        text_hidden: width of the text transformer (and the cross-attention dimension).
        text_layers: text transformer layers.
        text_heads: text transformer heads.
        attention_head_dim: UNet attention head width.
        max_length: tokens per prompt including BOS and EOS (prompts are padded to it).
        norm_groups: group-norm groups in the UNet.
        text_encoder: ``"bert"`` (bidirectional ``BertModel`` with absolute position
            embeddings, the default: the shipped weights), ``"t5"`` (bidirectional
            ``T5EncoderModel``) or ``"clip"``
            (causal ``CLIPTextModel``, the architecture of the first shipped weights).
        coordinates: the UNet's first convolution also reads each pixel's x and y
            (:class:`~diffpid.shapes.coord_unet.CoordUNet2DConditionModel`); ``False`` for the
            plain ``UNet2DConditionModel`` of the first shipped weights.
        pooled_text: the UNet also adds an attention-pooled summary of the caption to its
            timestep embedding (diffusers' ``addition_embed_type="text"``), so every pixel's
            features, and with them its cross-attention query, know the caption's relation
            word; the keys then only need to say which object a token belongs to.
    """

    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    attention_head_dim: int = 16
    max_length: int = 16
    norm_groups: int = 8
    text_encoder: str = "bert"
    coordinates: bool = True
    pooled_text: bool = False


@dataclass(frozen=True)
class ShapesComponents:
    """The four parts of the model (no VAE: it works on pixels)."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any


def build_tokenizer(max_length: int = 16) -> Any:
    """Word-level tokenizer over :data:`VOCABULARY` with ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in VOCABULARY:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                       special_tokens=[("<bos>", 2), ("<eos>", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=max_length)
    drop_punctuation(fast)
    return fast


#: what a word-level tokenizer without punctuation in its vocabulary splits on and drops
PUNCTUATION_SPLIT = r"[^\w\s'’-]+|\s+"


def drop_punctuation(tokenizer: Any) -> bool:
    """Make a word-level tokenizer drop punctuation that carries no word (``,``, ``.``, ``!``...).

    The shapes model's vocabulary has no punctuation, so ``"a red circle, left of a box."``
    would otherwise read ``,`` and ``.`` as unknown words; after this the tokens are those
    of the prompt without them, with character offsets into the prompt as written (so words
    are still located where they stand). Applies only to a fast tokenizer whose model is
    ``WordLevel`` and whose vocabulary holds no punctuation token; others are left alone.

    Returns:
        whether the tokenizer was changed.
    """
    import re

    from tokenizers import Regex, pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordLevel":
        return False
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    if any(re.search(r"[^\w\s]", t) for t in tokenizer.get_vocab() if t not in special):
        return False
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PUNCTUATION_SPLIT), behavior="removed")
    return True


def build_scheduler() -> Any:
    """Cosine-schedule DDPM scheduler, 1000 steps, epsilon prediction."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=False)


def build_components(config: ShapesConfig = ShapesConfig(), seed: int = 0) -> ShapesComponents:
    """Fresh, randomly initialised components (``torch.manual_seed(seed)`` before building).

    Args:
        config: the architecture.
        seed: initialisation seed.
    """
    from diffusers import UNet2DConditionModel

    from .coord_unet import CoordUNet2DConditionModel

    if config.text_encoder not in TEXT_ENCODERS:
        raise ParameterError(f"unknown text_encoder {config.text_encoder!r}; use one of {', '.join(TEXT_ENCODERS)}")
    tokenizer = build_tokenizer(config.max_length)
    torch.manual_seed(seed)
    if config.text_encoder == "clip":
        from transformers import CLIPTextConfig, CLIPTextModel

        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=config.text_hidden, intermediate_size=2 * config.text_hidden,
            num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_length, bos_token_id=2, eos_token_id=3, pad_token_id=0))
    elif config.text_encoder == "bert":
        from transformers import BertConfig, BertModel

        text_encoder = BertModel(BertConfig(
            vocab_size=len(tokenizer), hidden_size=config.text_hidden, intermediate_size=2 * config.text_hidden,
            num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_length, type_vocab_size=1, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, pad_token_id=0))
    else:
        from transformers import T5Config, T5EncoderModel

        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=config.text_hidden, d_kv=config.text_hidden // config.text_heads,
            d_ff=2 * config.text_hidden, num_layers=config.text_layers, num_heads=config.text_heads,
            dropout_rate=0.0, feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
            pad_token_id=0, eos_token_id=3, decoder_start_token_id=0))
    n = len(config.channels)
    unet_type = CoordUNet2DConditionModel if config.coordinates else UNet2DConditionModel
    unet = unet_type(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=tuple(config.channels),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        layers_per_block=config.layers_per_block, cross_attention_dim=config.text_hidden,
        attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_groups,
        **({"addition_embed_type": "text", "addition_embed_type_num_heads": config.text_heads}
           if config.pooled_text else {}))
    return ShapesComponents(unet, text_encoder, tokenizer, build_scheduler())


GENERATION = {"scheduler": "ddpm", "steps": 50, "guidance_scale": 3.0}
"""Generation defaults written to ``generation.json`` and read by ``load_model``: this small
model samples best with ancestral DDPM at guidance 2-3 (deterministic DDIM at 7.5, the
Stable Diffusion default, oversaturates it)."""


def save_components(components: ShapesComponents, path: str | Path, extra: dict | None = None) -> Path:
    """Save in the diffusers folder layout (safetensors weights).

    Args:
        components: the model.
        path: folder to write (created; files in it are replaced).
        extra: JSON-serialisable facts recorded in ``training.json`` (steps, loss, ...).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    components.unet.save_pretrained(path / "unet", safe_serialization=True)
    components.text_encoder.save_pretrained(path / "text_encoder", safe_serialization=True)
    components.tokenizer.save_pretrained(path / "tokenizer")
    components.scheduler.save_pretrained(path / "scheduler")
    import diffusers

    from ..models.loading import unet_entry

    index = {"_class_name": "ShapesModel", "_diffusers_version": diffusers.__version__,
             "unet": unet_entry(components.unet), "text_encoder": ["transformers", type(components.text_encoder).__name__],
             "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "DDPMScheduler"]}
    (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (path / "generation.json").write_text(json.dumps(GENERATION, indent=2) + "\n")
    if extra is not None:
        (path / "training.json").write_text(json.dumps(extra, indent=2) + "\n")
    return path


def load_components(path: str | Path | None = None) -> ShapesComponents:
    """Load a saved shapes model folder (default: the shipped weights), in eval mode.

    Raises:
        ModelLoadError: the folder or one of its parts is missing.
    """
    import transformers
    from diffusers import DDPMScheduler
    from transformers import AutoTokenizer

    path = Path(path) if path is not None else default_model_path()
    missing = [p for p in ("model_index.json", "unet", "text_encoder", "tokenizer", "scheduler") if not (path / p).exists()]
    if missing:
        raise ModelLoadError(f"{path} is not a shapes model folder (missing {', '.join(missing)}); "
                             "train one with `diffpid train-shapes` or omit the path to use the shipped model")
    index = json.loads((path / "model_index.json").read_text())
    encoder_class = index["text_encoder"][1]
    if encoder_class not in TEXT_ENCODERS.values():
        raise ModelLoadError(f"{path}/model_index.json names text encoder {encoder_class!r}; a shapes model uses "
                             f"one of {', '.join(TEXT_ENCODERS.values())}")
    from ..models.loading import unet_class

    unet = unet_class(index["unet"], path).from_pretrained(path / "unet").eval()
    text_encoder = getattr(transformers, encoder_class).from_pretrained(path / "text_encoder").eval()
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
    return ShapesComponents(unet, text_encoder, tokenizer, scheduler)


def default_model_path() -> Path:
    """Folder of the shipped shapes model (``diffpid/assets/shapes``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "shapes"


def tokenize(tokenizer: Any, captions: Sequence[str]) -> torch.Tensor:
    """Token ids ``(n, max_length)`` padded to the tokenizer's fixed length.

    Raises:
        ConditionError: a caption has words outside the vocabulary.
    """
    for c in captions:
        check_caption(c)
    out = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    return out.input_ids


def encode_captions(components: ShapesComponents, captions: Sequence[str]) -> torch.Tensor:
    """The condition: the text encoder's last hidden state ``(n, max_length, text_hidden)``."""
    ids = tokenize(components.tokenizer, captions)
    return components.text_encoder(ids).last_hidden_state


def config_from_dict(d: dict) -> ShapesConfig:
    """Inverse of ``asdict(ShapesConfig)`` (lists back to tuples; a dict without
    ``text_encoder`` or ``coordinates``, written before T5 and coordinates became the
    default, is the architecture of the first shipped weights: CLIP and a plain UNet)."""
    d = {"text_encoder": "clip", "coordinates": False, "pooled_text": False, **d}
    d["channels"] = tuple(d["channels"])
    return ShapesConfig(**d)


def load_shapes_model(path: str | Path | None = None, **kwargs: Any) -> Any:
    """The shapes model as a :class:`~diffpid.models.base.Model` (default: the shipped weights).

    Args:
        path: a shapes model folder; ``None`` for :func:`default_model_path`.
        **kwargs: passed to :func:`diffpid.models.diffusers.load_model`.
    """
    from ..models.loading import load_model

    path = Path(path) if path is not None else default_model_path()
    if not (path / "model_index.json").exists():
        raise ModelLoadError(f"no shapes model at {path}; train one with `diffpid train-shapes` and pass its folder")
    model = load_model(str(path), **kwargs)
    model.revision = training_revision(path)
    return model


def training_revision(path: str | Path) -> str | None:
    """The revision of a shapes model folder from its ``training.json``: ``"step N, from scratch, seed S"``
    (:func:`~diffpid.shapes.training.recipe.recipe_summary`), ``None`` without one."""
    from .training.recipe import recipe_summary

    try:
        record = json.loads((Path(path) / "training.json").read_text())
    except (OSError, ValueError):
        return None
    return recipe_summary(record) if isinstance(record, dict) else None


SCHEDULERS = ("ddpm", "ddim", "dpm")


def make_scheduler(components: ShapesComponents, scheduler: str) -> Any:
    """A diffusers scheduler for generation built from the model's schedule.

    Args:
        scheduler: ``"ddpm"`` (ancestral), ``"ddim"`` (deterministic, eta 0) or ``"dpm"``
            (DPM-Solver++ 2M, started at half-log-SNR -5.1 as diffusers advises for cosine schedules).
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    from ..errors import ParameterError

    config = components.scheduler.config
    if scheduler == "ddpm":
        return DDPMScheduler.from_config(config)
    if scheduler == "ddim":
        return DDIMScheduler.from_config(config)
    if scheduler == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, lambda_min_clipped=-5.1)
    raise ParameterError(f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}")


@torch.no_grad()
def generate_images(components: ShapesComponents, captions: Sequence[str], seed: int = 0,
                    steps: int = GENERATION["steps"], guidance: float = GENERATION["guidance_scale"],
                    scheduler: str = GENERATION["scheduler"], chunk: int = 64) -> torch.Tensor:
    """Sample images for captions with classifier-free guidance.

    Args:
        components: the model (eval mode).
        captions: ``n`` captions.
        seed: seed of the initial noise and of the ancestral noise (one generator per chunk,
            so image ``i`` depends on the chunking only through the ancestral noise).
        steps: scheduler steps.
        guidance: classifier-free guidance scale (1 = no guidance); the unconditional caption is ``""``.
        scheduler: see :func:`make_scheduler`.
        chunk: images per UNet batch.

    Returns:
        ``(n, 3, 32, 32)`` images in [-1, 1].
    """
    if not captions:
        return torch.empty(0, 3, 32, 32)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(captions), 3, 32, 32, generator=g)
    uncond = encode_captions(components, [""])
    out = []
    for s in range(0, len(captions), chunk):
        part = list(captions[s : s + chunk])
        cond = encode_captions(components, part)
        both = torch.cat([uncond.expand(len(part), -1, -1), cond])
        sched = make_scheduler(components, scheduler)
        sched.set_timesteps(steps)
        step_gen = torch.Generator().manual_seed(seed + 1 + s)
        x = noise[s : s + chunk]
        for t in sched.timesteps:
            e = components.unet(torch.cat([x, x]), t, encoder_hidden_states=both).sample
            e_u, e_c = e.chunk(2)
            eps = e_u + guidance * (e_c - e_u)
            x = sched.step(eps, t, x, generator=step_gen).prev_sample if scheduler == "ddpm" else sched.step(eps, t, x).prev_sample
        out.append(x.clamp(-1, 1))
    return torch.cat(out)


def to_uint8(images: torch.Tensor) -> Any:
    """``(n, 3, H, W)`` in [-1, 1] to ``(n, H, W, 3)`` uint8 numpy."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
