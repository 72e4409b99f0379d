"""Attention maps of a :class:`~diffpid.models.base.Model`: three ways to collect them.

- ``method="noise"``: at the noise levels the engine's sampler draws, on noisy versions
  of a given image (the "attention + information" variant of Kong et al., ICLR 2024);
  :func:`attention_and_information` gets the maps and the words' CMI from one engine
  run, at no extra denoiser cost.
- ``method="inversion"``: along a deterministic DDIM inversion of the image under the prompt.
- ``method="generate"``: along the model's own sampling of a new image from the prompt.

Rows are labelled without guessing: for ``noise`` and ``inversion`` the model's ``eps``
calls go through :class:`LabelledModel`, which queues one label per UNet row from the
documented ``eps`` layout (``n`` inputs times ``k`` conditions, input-major) and checks
that the UNet consumed exactly that many rows; for ``generate`` (a pipeline with
classifier-free guidance in whatever batch order) rows are matched by text embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from ..engine.channel import Sampler
from ..engine.estimate import Difference, estimate
from ..errors import ParameterError, ShapeError
from ..information import Information
from ..models.base import Model, is_single
from ..sampling import ddim_invert
from ..settings import Settings
from .capture import AttentionCapture
from .rows import Row
from .maps import AttentionMaps

__all__ = ["AttentionInformation", "LabelledModel", "attention_and_information", "attention_maps"]

METHODS = ("noise", "inversion", "generate")


class LabelledModel(Model):
    """``model`` whose ``eps`` calls label their UNet rows for ``capture``.

    Args:
        model: a model whose ``eps(x_a, a, conditions)`` runs the captured UNet on
            ``n * k`` rows, input-major (row ``i * k + j`` = input ``i``, condition ``j``).
        capture: the active :class:`~diffpid.attention.capture.AttentionCapture`.
        conditions: pairs ``(condition, prompt)``: rows of that condition object are
            labelled with that captured prompt; other conditions' rows are ignored.
    """

    def __init__(self, model: Model, capture: AttentionCapture, conditions: Sequence[tuple[Any, str]]) -> None:
        self.model, self.capture = model, capture
        self.conditions = list(conditions)
        self.data_shape = model.data_shape
        self.logsnr_range = model.logsnr_range
        self.device = model.device
        self.name = model.name
        self.dtype = model.dtype
        self.resolution = model.resolution
        self.capabilities = model.capabilities

    def identity(self):
        return self.model.identity()

    def tokenize(self, prompt: str):
        return self.model.tokenize(prompt)

    def attention_adapter(self):
        return self.model.attention_adapter()

    def encode_image(self, image: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model.encode_image(image, *args, **kwargs)

    def decode(self, x: torch.Tensor) -> Any:
        return self.model.decode(x)

    def generate(self, prompt: Any, seed: int = 0, **kwargs: Any):
        return self.model.generate(prompt, seed=seed, **kwargs)

    def unconditional(self) -> Any:
        return self.model.unconditional()

    def check_x(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.check_x(x)

    def encode_prompt(self, prompt: Any) -> Any:
        return self.model.encode_prompt(prompt)

    def _prompt_of(self, condition: Any) -> str | None:
        for c, p in self.conditions:
            if c is condition:
                return p
        return None

    def eps(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        keys = [self._prompt_of(c) for c in conditions]
        a = logsnr.detach().float().cpu().reshape(-1)
        self.capture.expect([None if p is None else Row(p, float(a[i])) for i in range(len(x_a)) for p in keys])
        try:
            out = self.model.eps(x_a, logsnr, conditions)
        finally:
            left = self.capture.drop_expected()
        if left:
            raise ShapeError(
                f"{self.model.name}.eps ran the network on {len(x_a) * len(keys) - left} rows for {len(x_a)} inputs x "
                f"{len(keys)} conditions; attention capture needs one batch row per input and condition"
            )
        return out


def _results(cap: AttentionCapture, prompt: str, words: Any, images: int, size: Any, single: bool):
    out = tuple(cap.maps(words, prompt, image=i, size=size) for i in range(images))
    return out[0] if single else out


def _default_size(model: Model, size: Any) -> Any:
    return size if size is not None else model.resolution


def attention_maps(
    model: Model,
    x: torch.Tensor | str,
    words: Sequence[Any],
    prompt: str | None = None,
    *,
    method: str | None = None,
    samples: int = 128,
    sampler: Sampler | str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    steps: int = 50,
    guidance_scale: float | None = None,
    negative_prompt: str = "",
    size: tuple[int, int] | None = None,
    per_step: bool = False,
    per_layer: bool = False,
    per_head: bool = False,
    layers: Sequence[str] | None = None,
    attention: str = "scores",
) -> AttentionMaps | tuple[AttentionMaps, ...]:
    """Cross-attention maps (DAAM) of ``words`` of ``prompt``.

    Args:
        model: a model with the ``"attention"`` capability (its
            :meth:`~diffpid.models.base.Model.attention_adapter` says where the attention lives).
        x: ``(*data_shape)`` or ``(b, *data_shape)`` data to explain, or a prompt string to
            generate from (then ``prompt`` may be omitted).
        words: words or phrases of the prompt, or token index sequences.
        prompt: the prompt (for data ``x``).
        method: ``"noise"`` (default for data): at the engine sampler's noise levels;
            ``"inversion"``: along DDIM inversion; ``"generate"`` (default for a prompt).
        samples, sampler, batch_size, seed, generator, progress: as
            :func:`diffpid.mutual_information` (``"noise"`` only; the default sampler is
            ``"sobol"``, the papers' truncated logistic, since no information term is
            there to adapt to). ``seed`` also seeds ``"generate"``.
        steps: trajectory steps (``"inversion"``, ``"generate"``).
        guidance_scale, negative_prompt: classifier-free guidance of ``"generate"`` (default:
            the model's, see ``DiffusersModel.generation``).
        size: output ``(h, w)``; default the model's image size (``model.resolution``; the
            accumulation grid when it has none).
        per_step, per_layer, per_head, layers: breakdowns and layer choice, as
            :class:`~diffpid.attention.capture.AttentionCapture`.
        attention: ``"scores"`` (attention probabilities) or ``"concepts"`` (concept
            attention of the words, joint-attention models only).

    Returns:
        :class:`AttentionMaps` for one input (for generation with the sample in
        ``.generated``), a tuple of them for a batch.
    """
    if isinstance(x, str):
        if prompt is not None and prompt != x:
            raise ParameterError("give the prompt once: as x (to generate) or as prompt (to explain data x)")
        prompt, method = x, method or "generate"
    method = method or "noise"
    if method not in METHODS:
        raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(prompt, str):
        raise ParameterError("give the prompt whose words are mapped (a string)")
    model.require("attention", "attention maps")
    size = _default_size(model, size)
    opts = dict(per_step=per_step, per_layer=per_layer, per_head=per_head, layers=layers, method=attention)
    cond = model.encode_prompt(prompt)
    if method == "generate":
        emb = model.attention_adapter().text_embeddings(cond)
        if emb is None:
            raise ParameterError(f"{model.name} conditions carry no text embeddings; use method='inversion'")
        with AttentionCapture.for_model(model, prompt, words, embeddings=[emb], **opts) as cap:
            extra = {"negative_prompt": negative_prompt} if negative_prompt else {}  # not every backend has one
            g = model.generate(prompt, seed=seed, steps=steps, guidance_scale=guidance_scale, **extra)
        return replace(cap.maps(words, prompt, size=size), generated=g)
    if isinstance(x, str):
        raise ParameterError(f"method {method!r} explains data: pass x as a tensor and the prompt")
    single = tuple(x.shape) == tuple(model.data_shape)
    xb = model.check_x(x)
    with AttentionCapture.for_model(model, prompt, words, **opts) as cap:
        lm = LabelledModel(model, cap, [(cond, prompt)])
        if method == "inversion":
            ddim_invert(lm, xb, cond, steps)
        else:
            estimate(lm, xb, [cond], [Difference(0, 0)], samples=samples, sampler=sampler or "sobol",
                     batch_size=batch_size, seed=seed, generator=generator, progress=progress, on_batch=cap.engine_callback(len(xb)))
    return _results(cap, prompt, words, len(xb), size, single)


@dataclass(frozen=True)
class AttentionInformation:
    """Attention maps and conditional MI of the same words from one engine run.

    Args:
        attention: :class:`AttentionMaps` (a tuple of them for a batch), collected at the
            engine's noise levels on the full prompt's rows.
        information: per word, its :class:`~diffpid.information.Information`
            ``i_o(x; word | rest of the prompt)``.
    """

    attention: AttentionMaps | tuple[AttentionMaps, ...]
    information: tuple[Information, ...]


def attention_and_information(
    model: Model,
    x: torch.Tensor,
    prompt: str,
    words: Sequence[Any],
    *,
    size: tuple[int, int] | None = None,
    per_step: bool = False,
    per_layer: bool = False,
    per_head: bool = False,
    layers: Sequence[str] | None = None,
    attention: str = "scores",
    settings: Settings | None = None,
    **overrides: Any,
) -> AttentionInformation:
    """Each word's CMI given the rest of the prompt and its attention map, from one engine run.

    The CMI terms are a :class:`~diffpid.plan.Plan` of the words (the prompt against the
    prompt without each word); attention comes from the prompt's rows of the same denoiser
    calls. ``size`` and the breakdowns as :func:`attention_maps`; ``settings`` (or its fields
    as keywords) as :func:`diffpid.mutual_information`.
    """
    from ..plan import Plan, encode

    settings = Settings.of(settings, **overrides)
    if isinstance(words, str):
        words = [words]
    if not words or not all(isinstance(w, str) for w in words):
        raise ParameterError("words must be words or phrases of the prompt (strings)")
    model.require("attention", "attention maps")
    single = is_single(model, x)
    xb = model.check_x(x)
    plan = Plan().words(prompt, words, kinds=("cmi",))
    conds = [encode(model, c) for c in plan.conditions]
    with AttentionCapture.for_model(model, prompt, words, per_step=per_step, per_layer=per_layer, per_head=per_head,
                                    layers=layers, method=attention) as cap:
        lm = LabelledModel(model, cap, [(conds[plan.condition(prompt)], prompt)])
        result = plan.run(model, x, settings, conditions=conds, model_for_engine=lm,
                          on_batch=cap.engine_callback(len(xb)))
    info = tuple(result.cmi[w] for w in words)
    return AttentionInformation(_results(cap, prompt, words, len(xb), _default_size(model, size), single), info)
