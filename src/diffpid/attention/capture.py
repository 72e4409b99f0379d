"""Capture of text-attention maps while a denoiser runs, aggregated on the fly (DAAM).

:class:`AttentionCapture` is a context manager around any use of a denoiser network (a
pipeline call, DDIM inversion, the estimator engine). Where the attention lives is the
business of an :class:`~diffpid.attention.adapters.AttentionAdapter` (the UNet's
cross-attention, a transformer's joint attention; a model gives its own through
:meth:`~diffpid.models.base.Model.attention_adapter`): on entry the adapter wraps the
processors of the chosen layers (outputs untouched) and the capture registers a forward
pre-hook and hook on the adapter's network; on exit, also after an error, the original
processors come back and the hooks go.

Which batch rows belong to which prompt is never guessed (DAAM keeps the second half
of the batch and so silently mixes up heads without classifier-free guidance). Each
forward call's rows are labelled, in this order of precedence, by:

1. labels queued with :meth:`AttentionCapture.expect` (diffpid's own callers, which know
   the model's ``eps`` layout: ``n`` inputs times ``k`` conditions, input-major);
2. ``layout``: the batch as equal contiguous blocks, e.g. ``["", prompt]`` for a
   diffusers pipeline with guidance (``None`` marks a block to ignore);
3. ``embeddings``: each row goes to the prompt whose text embedding it carries;
4. a single prompt and no other information: every row must carry the same embedding,
   otherwise an error says to pass ``layout`` or ``embeddings``.

Two methods (``method``):

- ``"scores"``: per call (one step) and labelled row, each layer's ``(heads, T, h, w)``
  probabilities of the image queries over the text keys;
- ``"concepts"`` (joint attention only; ConceptAttention, Helbling et al. 2025): per
  layer, the softmax over the given concepts (token spans) of the dot products of the
  image tokens' and the concepts' attention outputs, ``(C, h, w)``.

The layer maps are upsampled to the accumulation grid (the UNet input's size, the
transformer's token grid) with bicubic interpolation and clamped at 0; the step's map is
their mean over layers and heads. The running sum over steps is kept per prompt and
image; per-step, per-layer and per-head maps only on request. Memory does not grow with
the number of steps unless ``per_step`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConditionError, ParameterError, ShapeError
from ..models.base import CapabilityError
from .adapters import AttentionAdapter, LayerCall, UNetCrossAttentionAdapter
from .rows import Row, label_rows
from .concepts import concept_positions, concept_scores
from .maps import AttentionMaps, build_maps, word_tokens

METHODS = ("scores", "concepts")

__all__ = ["AttentionCapture"]


@dataclass
class _Acc:
    """Running sums for one (prompt, image): ``(T, H, W)`` maps."""

    total: torch.Tensor | None = None
    steps: int = 0
    step_maps: list = field(default_factory=list)
    levels: list = field(default_factory=list)
    layer_sum: list | None = None  # per layer (T, H, W)
    head_sum: list | None = None  # per layer (heads, T, H, W)


class _Call:
    """State of one forward call of the network: labelled rows and their partial sums."""

    def __init__(self, rows: list[Row | None], size: tuple[int, int], grid: tuple[int, int]) -> None:
        self.rows = rows
        self.size = size
        self.index = [i for i, r in enumerate(rows) if r is not None]
        self.grid = grid
        self.sum: torch.Tensor | None = None  # (R, T, H, W)
        self.count = 0
        self.layers: dict[int, torch.Tensor] = {}  # layer -> (R, T, H, W) mean over heads
        self.heads: dict[int, torch.Tensor] = {}  # layer -> (R, heads, T, H, W)
        self.sel: torch.Tensor | None = None  # the labelled rows' indices on the network's device


class AttentionCapture:
    """Record per-token text-attention maps of chosen prompts while a denoiser runs.

    Use it as a context manager around a pipeline call or any use of the network;
    afterwards :meth:`maps` gives per-word maps. Example::

        with AttentionCapture(pipe.unet, "a cat on a mat", tokenizer=pipe.tokenizer,
                              layout=["", "a cat on a mat"]) as cap:
            pipe("a cat on a mat", negative_prompt="")
        m = cap.maps(["cat", "mat"], size=(512, 512))

    Args:
        unet: an :class:`~diffpid.attention.adapters.AttentionAdapter` (``model.attention_adapter()``),
            or a diffusers ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL, the embedded model),
            taken through :class:`~diffpid.attention.adapters.UNetCrossAttentionAdapter`.
        prompt: the prompt, or prompts, whose attention is kept.
        tokenizer: what locates words in a prompt: a model with ``tokenize(prompt)`` or a
            Hugging Face tokenizer. Needed by :meth:`maps` for words given as strings.
        layout: the batch of each forward call as equal contiguous blocks of prompts; blocks of prompts
            that are not captured (or ``None``) are skipped. ``["", prompt]`` for a pipeline
            with guidance and an empty negative prompt.
        embeddings: one ``(T, d)`` text embedding per prompt; rows are matched to them.
        resolution: ``(H, W)`` grid the maps are accumulated on; default the UNet input size.
        per_step: also keep every step's map (memory grows with steps).
        per_layer: also keep a map per layer (mean over its heads and the steps).
        per_head: also keep a map per layer and head (mean over the steps).
        layers: names (or name prefixes) of the attention layers to use; default the
            adapter's default layers (every cross-attention layer of a UNet).
        tokens: token indices to keep (the probabilities are still normalised over all
            tokens); default all. Fewer tokens make the capture much cheaper.
        method: ``"scores"`` (attention probabilities) or ``"concepts"`` (concept attention,
            joint-attention adapters only; needs ``concepts``).
        concepts: for ``"concepts"``: the concepts as token spans of the prompt (each a
            tuple of token indices; a concept's output is the mean of its tokens'), and
            optionally ``concept_labels``, one name per concept.
    """

    def __init__(
        self,
        unet: Any,
        prompt: str | Sequence[str],
        *,
        tokenizer: Any = None,
        layout: Sequence[str | None] | None = None,
        embeddings: Sequence[torch.Tensor] | None = None,
        resolution: tuple[int, int] | None = None,
        per_step: bool = False,
        per_layer: bool = False,
        per_head: bool = False,
        layers: Sequence[str] | None = None,
        tokens: Sequence[int] | None = None,
        method: str = "scores",
        concepts: Sequence[Sequence[int]] | None = None,
        concept_labels: Sequence[str] | None = None,
    ) -> None:
        adapter = unet if isinstance(unet, AttentionAdapter) else UNetCrossAttentionAdapter(unet)
        if method not in METHODS:
            raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.prompts = (prompt,) if isinstance(prompt, str) else tuple(prompt)
        if not self.prompts or not all(isinstance(p, str) for p in self.prompts):
            raise ParameterError("prompt must be a string or a list of strings")
        if len(set(self.prompts)) != len(self.prompts):
            raise ParameterError("the same prompt is listed twice; give each prompt once")
        if layout is not None:
            layout = [p if p in self.prompts else None for p in layout]  # other prompts' blocks are skipped
            if not any(layout):
                raise ParameterError(f"layout names none of the captured prompts {list(self.prompts)}")
        if embeddings is not None:
            embeddings = [e.detach().reshape(e.shape[-2], e.shape[-1]) for e in embeddings]
            if len(embeddings) != len(self.prompts):
                raise ParameterError(f"give one embedding per prompt ({len(self.prompts)}), got {len(embeddings)}")
        if layout is None and embeddings is None and len(self.prompts) > 1:
            raise ParameterError("with several prompts pass layout= or embeddings= to tell the batch rows apart")
        self.adapter = adapter
        self.module = adapter.module
        self.method = method
        self.tokenizer = tokenizer
        self.layout = layout
        self.embeddings = embeddings
        self.resolution = tuple(resolution) if resolution is not None else None
        self.per_step, self.per_layer, self.per_head = per_step, per_layer, per_head
        self.layers = adapter.select(layers)
        self.concepts: tuple[tuple[int, ...], ...] | None = None
        self.concept_labels: tuple[str, ...] = ()
        if method == "concepts":
            if not adapter.concepts:
                raise CapabilityError(f"concept attention needs joint attention (MM-DiT); the {adapter.kind} adapter "
                                      "has none: use method='scores'")
            if not concepts or not all(len(c) and all(isinstance(i, int) and i >= 0 for i in c) for c in concepts):
                raise ParameterError("concept attention needs concepts: token spans such as [(2,), (5, 6)]")
            self.concepts = tuple(tuple(int(i) for i in c) for c in concepts)
            self.concept_labels = tuple(concept_labels) if concept_labels is not None else tuple(
                "tokens " + ",".join(map(str, c)) for c in self.concepts)
            if len(self.concept_labels) != len(self.concepts):
                raise ParameterError("give one concept label per concept")
            tokens = None
        if tokens is not None:
            tokens = tuple(sorted({int(i) for i in tokens}))
            if not tokens or tokens[0] < 0:
                raise ParameterError("tokens must be non-negative token indices (at least one)")
        self.tokens = tokens
        self.images = 1  # inputs per engine batch, set by engine_callback
        self._acc: dict[tuple[str, int], _Acc] = {}
        self._queue: list[Row | None] = []
        self._pending: dict[str, list] = {}
        self._call: _Call | None = None
        self._draws = False
        self._saved: dict[str, Any] | None = None
        self._handles: list = []

    @classmethod
    def for_model(cls, model: Any, prompt: str | Sequence[str], words: Any = None, **kwargs: Any) -> "AttentionCapture":
        """A capture through ``model.attention_adapter()`` that locates words with ``model.token_span``.

        Args:
            model: a diffpid model with the ``"attention"`` capability.
            prompt: the prompt(s) to capture.
            words: if given, words of the (first) prompt whose tokens alone are kept (for
                ``method="concepts"``: the concepts); default all tokens.
            kwargs: further :class:`AttentionCapture` arguments.

        Raises:
            CapabilityError: the model has no attention to capture.
        """
        model.require("attention", "attention maps")
        tok = model if model.has("text") else None
        if words is not None:
            words = [words] if isinstance(words, str) else list(words)
            if not words:
                raise ParameterError("no words given; pass at least one word of the prompt")
            first = prompt if isinstance(prompt, str) else prompt[0]
            spans = [word_tokens(first, w, tok) for w in words]
            if kwargs.get("method") == "concepts":
                kwargs.setdefault("concepts", spans)
                kwargs.setdefault("concept_labels", [w if isinstance(w, str) else getattr(w, "text", str(w))
                                                     for w in words])
            else:
                kwargs["tokens"] = sorted({i for s in spans for i in s})
        return cls(model.attention_adapter(), prompt, tokenizer=tok, **kwargs)

    # context management -------------------------------------------------------------
    def __enter__(self) -> "AttentionCapture":
        if self._saved is not None:
            raise ParameterError("this AttentionCapture is already active; use a new one to nest captures")
        self.adapter.install(self.layers, self._on_layer)  # on failure it has undone itself
        self._saved = {}
        try:
            self._handles = [
                self.module.register_forward_pre_hook(self._on_call, with_kwargs=True),
                self.module.register_forward_hook(self._on_return),
            ]
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._saved is not None:
            self.adapter.restore()
        self._saved = None
        self._call = None
        self._queue.clear()

    # row labels ------------------------------------------------------------------------
    def expect(self, rows: Sequence[Row | None]) -> None:
        """Queue labels for the next batch rows, in order (consumed call by call)."""
        self._queue.extend(rows)

    def drop_expected(self) -> int:
        """Forget the queued labels that no batch row used; returns how many there were."""
        left = len(self._queue)
        self._queue.clear()
        return left

    def _label(self, ehs: torch.Tensor, timestep: Any) -> list[Row | None]:
        b = ehs.shape[0]
        if self._queue:
            if len(self._queue) < b:
                raise ShapeError(f"{len(self._queue)} row labels queued for a batch of {b} rows")
            rows, self._queue = self._queue[:b], self._queue[b:]
            return rows
        return label_rows(ehs, timestep, self.prompts, self.layout, self.embeddings)

    # hooks -------------------------------------------------------------------------------
    def _on_call(self, module: Any, args: tuple, kwargs: dict) -> None:
        inputs = self.adapter.call_inputs(args, kwargs)
        rows = self._label(inputs.text, inputs.timestep)
        size = tuple(inputs.size)
        self._call = _Call(rows, size, self.resolution or size)

    def _on_layer(self, index: int, layer: LayerCall) -> None:
        call = self._call
        if call is None or not call.index:
            return
        sel = None
        if len(call.index) < layer.batch:  # compute only the captured rows
            if call.sel is None or call.sel.device != layer.device:
                call.sel = torch.tensor(call.index, device=layer.device)
            sel = call.sel
        if self.method == "concepts":
            probs, heads_out = concept_scores(*layer.outputs(sel), self.concepts, self.per_head)
        else:
            probs = layer.probabilities(sel)
            if self.tokens is not None:
                if self.tokens[-1] >= probs.shape[-1]:
                    raise ShapeError(f"token {self.tokens[-1]} asked for, but the layer attends to {probs.shape[-1]} tokens")
                probs = probs[..., list(self.tokens)]
            heads_out = None
        r, heads, n, t = probs.shape
        h, w = layer.grid(call.size)
        with torch.no_grad():
            p = probs.float().permute(0, 1, 3, 2).reshape(r * heads, t, h, w)
            if (h, w) != tuple(call.grid):
                p = F.interpolate(p, size=call.grid, mode="bicubic", align_corners=False).clamp_min_(0)
            p = p.view(r, heads, t, *call.grid)
            s = p.sum(1)
            call.sum = s if call.sum is None else call.sum + s
            call.count += heads
            if self.per_layer:
                call.layers[index] = s / heads
            if self.per_head:
                call.heads[index] = p if heads_out is None else self._to_grid(heads_out, (h, w), call.grid)

    @staticmethod
    def _to_grid(probs: torch.Tensor, hw: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
        """``(r, heads, n, T)`` to ``(r, heads, T, *grid)``."""
        r, heads, n, t = probs.shape
        p = probs.float().permute(0, 1, 3, 2).reshape(r * heads, t, *hw)
        if tuple(hw) != tuple(grid):
            p = F.interpolate(p, size=grid, mode="bicubic", align_corners=False).clamp_min_(0)
        return p.view(r, heads, t, *grid)

    def _on_return(self, module: Any, args: tuple, output: Any) -> None:
        call, self._call = self._call, None
        if call is None or call.sum is None:
            return
        step = call.sum / call.count  # (R, T, H, W) mean over layers and heads
        seen: dict[str, int] = {}
        for j, i in enumerate(call.index):
            row = call.rows[i]
            layers = [call.layers[l][j] for l in range(len(self.layers))] if self.per_layer else None
            heads = [call.heads[l][j] for l in range(len(self.layers))] if self.per_head else None
            if self._draws:
                self._pending.setdefault(row.prompt, []).append((step[j], layers, heads))
            else:
                image = seen.get(row.prompt, 0)
                seen[row.prompt] = image + 1
                self._commit(row.prompt, image, row.level, step[j], layers, heads)

    def _commit(self, prompt: str, image: int, level: float | None, step: torch.Tensor,
                layers: list | None, heads: list | None) -> None:
        acc = self._acc.setdefault((prompt, image), _Acc())
        acc.total = step.clone() if acc.total is None else acc.total + step
        acc.steps += 1
        acc.levels.append(float("nan") if level is None else float(level))
        if self.per_step:
            acc.step_maps.append(step.cpu())
        if layers is not None:
            acc.layer_sum = [m.clone() for m in layers] if acc.layer_sum is None else [
                a + m for a, m in zip(acc.layer_sum, layers)]
        if heads is not None:
            acc.head_sum = [m.clone() for m in heads] if acc.head_sum is None else [
                a + m for a, m in zip(acc.head_sum, heads)]

    # the engine's noise levels ------------------------------------------------------------
    def engine_callback(self, images: int = 1):
        """An ``on_batch`` callback for :func:`diffpid.engine.estimate.estimate` over ``images`` inputs.

        While it is in use, each captured prompt's rows count the engine's noisy inputs
        in order (every input is evaluated once under every condition); after each
        batch the callback assigns them to their image (input ``i`` is image
        ``i % images``) and noise level (its log-SNR) and adds them to the sums.
        """
        if not isinstance(images, int) or images < 1:
            raise ParameterError(f"images must be a positive integer, got {images!r}")
        self._draws = True
        self.images = images

        def on_batch(x_a: torch.Tensor, logsnr: torch.Tensor, weight: Any, eps: Any, predictions: Any) -> None:
            a = logsnr.detach().float().cpu()
            for prompt in list(self._pending):
                got = self._pending.pop(prompt)
                if len(got) != len(x_a):
                    raise ShapeError(
                        f"saw {len(got)} denoiser rows of {prompt!r} for {len(x_a)} noisy inputs; each condition "
                        "must appear once per input (is the same prompt given twice as a condition?)"
                    )
                for i, (step, layers, heads) in enumerate(got):
                    self._commit(prompt, i % images, float(a[i]), step, layers, heads)

        return on_batch

    # results -------------------------------------------------------------------------------
    def steps(self, prompt: str | None = None, image: int = 0) -> int:
        """How many steps (forward calls, or engine draws) were averaged for ``prompt`` and ``image``."""
        acc = self._acc.get((self._prompt(prompt), image))
        return 0 if acc is None else acc.steps

    def _prompt(self, prompt: str | None) -> str:
        if prompt is None:
            if len(self.prompts) > 1:
                raise ParameterError(f"several prompts were captured; name one of {list(self.prompts)}")
            return self.prompts[0]
        if prompt not in self.prompts:
            raise ParameterError(f"{prompt!r} was not captured; captured prompts: {list(self.prompts)}")
        return prompt

    def _get(self, prompt: str | None, image: int) -> tuple[str, _Acc]:
        prompt = self._prompt(prompt)
        acc = self._acc.get((prompt, image))
        if acc is None or acc.steps == 0:
            raise ConditionError(
                f"no attention was captured for {prompt!r} (image {image}); did the denoiser run inside the "
                "capture with that prompt, and do layout / embeddings name it?"
            )
        return prompt, acc

    def token_maps(self, prompt: str | None = None, image: int = 0) -> torch.Tensor:
        """``(T, H, W)`` mean map of every kept token (over layers, heads and steps) on the accumulation grid."""
        _, acc = self._get(prompt, image)
        return (acc.total / acc.steps).cpu()

    def maps(self, words: Sequence[Any], prompt: str | None = None, *, image: int = 0,
             size: tuple[int, int] | None = None) -> AttentionMaps:
        """Per-word maps: the mean over a word's tokens of :meth:`token_maps`, resized to ``size``.

        For ``method="concepts"`` the words are the captured concepts (by label or token
        span) and each map is its concept's; :meth:`token_maps` then has one map per concept.

        Args:
            words: words or phrases of the prompt (located with ``tokenizer``), or token
                index sequences such as ``(2, 3)``.
            prompt: which captured prompt (default: the only one).
            image: which image of the batch (rows of the same prompt in one forward call, or
                the engine's inputs).
            size: ``(h, w)`` output size (bicubic, clamped at 0); default the accumulation grid.
        """
        prompt, acc = self._get(prompt, image)
        token_ids, labels = self.tokens, None
        if self.method == "concepts":
            words, labels = concept_positions(prompt, words, self.concepts, self.concept_labels, self.tokenizer)
            token_ids = None
        out = build_maps(
            prompt, words, self.tokenizer, acc.total / acc.steps, acc.steps, acc.levels,
            step_maps=acc.step_maps if self.per_step else None,
            token_ids=token_ids,
            layers=self.layers,
            layer_maps=None if acc.layer_sum is None else [m / acc.steps for m in acc.layer_sum],
            head_maps=None if acc.head_sum is None else [m / acc.steps for m in acc.head_sum],
            size=size,
        )
        if labels is None:
            return out
        return replace(out, words=tuple(labels), tokens=tuple(self.concepts[k[0]] for k in words))
