"""Parse pretraining of the shapes model's text encoder.

Stable Diffusion's text encoder is trained apart from the UNet (CLIP, on image-text pairs)
and frozen while the UNet learns. The shapes model can do the same with the one
supervision its world gives for free: the parse of every caption. Before the diffusion
training, the encoder learns to say, for each token, three things, each read off its last
hidden state by a linear head:

``role``
    article, size, colour, shape, relation or "of" (the homonym "orange" is a colour
    before a shape word and a shape otherwise, so this is decided by context);
``meaning``
    the word's own sense: the size, the colour, the shape word ("box" and "square" are
    two classes, and so are the fruit "orange" and the colour), the relation, or the
    article / "of". With ``lexicon=True`` (the parse of the shipped lineage model) it is
    the canonical attribute instead: "box" is a square, the fruit "orange" a circle. That
    tells the encoder the world's synonym and homonym, which then collapse onto one
    representation ("a orange" and "a circle" differ by 0.28 of their size in the shipped
    encoder, "box" and "square" by 0.11): the UNet can no longer learn them apart, and
    the PID studies would measure what the parse was told instead of what the model
    learned from the images (docs/embedded-model.md, "The homonym");
``side``
    where the token's object goes: ``left`` / ``right`` / ``top`` / ``bottom`` for an object
    of a two-object caption that names its relation (the first object of "A right of B"
    is on the right, the second on the left), ``open`` when the caption leaves the
    relation out, ``alone`` for a one-object caption, ``none`` for the relation word and "of".

``side`` is the binding the UNet otherwise has to discover through the diffusion loss:
it needs the position of the token in the caption and the relation word that comes after
(or before) it. With it in the keys, a pixel's cross-attention query only has to say
"I am on the left" (it knows where it is: :mod:`diffpid.shapes.coord_unet`) to read the
colour, shape and size of the object that goes there.

The heads are dropped after pretraining; only the encoder is kept (and, with
``TrainSettings.freeze_text_encoder``, frozen while the UNet trains). Captions are drawn
by the world's own training process (held-out captions excluded), so the encoder never
sees a held-out caption either.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..captions import sample_plan
from ..world import COLORS, RELATIONS, SHAPE_WORDS, SHAPES, SIZES, Plan

ROLES = ("article", "size", "color", "shape", "relation", "of")
FRUIT = "orange (fruit)"
"""The meaning class of the shape word "orange" when the targets keep words apart."""
MEANINGS = ("a", *SIZES, *COLORS, *SHAPES, "box", FRUIT, *RELATIONS, "of")
SIDES = ("alone", "left", "right", "top", "bottom", "open", "none")
HEADS = {"role": ROLES, "meaning": MEANINGS, "side": SIDES}
"""Target name to its classes; a token's target is an index into these."""
IGNORE = -100
_FIRST_SIDE = {"left": ("left", "right"), "right": ("right", "left"), "above": ("top", "bottom"),
               "below": ("bottom", "top")}


def token_targets(plan: Plan, max_length: int, lexicon: bool = False) -> torch.Tensor:
    """``(3, max_length)`` targets (role, meaning, side) of a plan's caption tokens.

    Token ``k + 1`` is the caption's word ``k`` (token 0 is BOS); BOS, EOS and padding are
    :data:`IGNORE`. ``lexicon``: a shape word's meaning is the shape it names (see the
    module docstring), else the word itself.
    """
    out = torch.full((3, max_length), IGNORE, dtype=torch.long)
    named = next((w.text for w in plan.words if w.role == "relation"), None)
    for k, w in enumerate(plan.words[: max_length - 2]):
        if w.role in ("size", "color", "relation"):
            meaning = w.text
        elif w.role == "shape":
            meaning = SHAPE_WORDS[w.text] if lexicon else FRUIT if w.text == "orange" else w.text
        else:
            meaning = "a" if w.role == "article" else "of"
        if w.obj < 0:
            side = "none"
        elif len(plan.objects) == 1:
            side = "alone"
        elif named is None:
            side = "open"
        else:
            side = _FIRST_SIDE[named][w.obj]
        out[:, k + 1] = torch.tensor([ROLES.index(w.role), MEANINGS.index(meaning), SIDES.index(side)])
    return out


def parse_batch(n: int, rng: random.Random, max_length: int,
                lexicon: bool = False) -> tuple[tuple[str, ...], torch.Tensor]:
    """``n`` non-empty training captions and their ``(n, 3, max_length)`` targets (``lexicon``: see
    :func:`token_targets`)."""
    plans: list[Plan] = []
    while len(plans) < n:
        plan = sample_plan(rng, training=True)
        if plan.words:
            plans.append(plan)
    return tuple(p.caption for p in plans), torch.stack([token_targets(p, max_length, lexicon) for p in plans])


class ParseHeads(torch.nn.Module):
    """One linear head per target of :data:`HEADS` over the encoder's last hidden state."""

    def __init__(self, width: int):
        super().__init__()
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, len(v)) for k, v in HEADS.items()})

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: h(hidden) for k, h in self.heads.items()}


@dataclass(frozen=True)
class ParseReport:
    """Outcome of :func:`pretrain_text_encoder`: steps run, final loss, and per-target token
    accuracy on fresh captions."""

    steps: int
    loss: float
    accuracy: dict[str, float]


def _logits(text_encoder: Any, tokenizer: Any, heads: ParseHeads, captions: Sequence[str]) -> dict[str, torch.Tensor]:
    from ..model import tokenize

    device = next(heads.parameters()).device
    return heads(text_encoder(tokenize(tokenizer, captions).to(device)).last_hidden_state)


def _loss(logits: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    return sum(torch.nn.functional.cross_entropy(logits[k].flatten(0, 1), targets[:, i].flatten(), ignore_index=IGNORE)
               for i, k in enumerate(HEADS))


def parse_accuracy(text_encoder: Any, tokenizer: Any, heads: ParseHeads, n: int = 2000,
                   seed: int = 1, lexicon: bool = False) -> dict[str, float]:
    """Token accuracy of each head on ``n`` fresh training captions."""
    captions, targets = parse_batch(n, random.Random(seed), tokenizer.model_max_length, lexicon)
    with torch.no_grad():
        logits = _logits(text_encoder, tokenizer, heads, captions)
    out = {}
    targets = targets.to(next(heads.parameters()).device)
    for i, k in enumerate(HEADS):
        t = targets[:, i]
        keep = t != IGNORE
        out[k] = float((logits[k].argmax(-1)[keep] == t[keep]).float().mean())
    return out


def pretrain_text_encoder(text_encoder: Any, tokenizer: Any, steps: int, seed: int = 0, batch_size: int = 256,
                          lr: float = 1e-3, progress: bool = True, state: dict | None = None,
                          save: Callable[[dict], None] | None = None, save_every: int = 100,
                          lexicon: bool = False) -> ParseReport:
    """Train ``text_encoder`` in place on the parse targets (see the module docstring).

    Args:
        text_encoder: a transformers text model whose ``last_hidden_state`` is the condition.
        tokenizer: the shapes tokenizer (its ``model_max_length`` sets the token count).
        steps: optimisation steps (AdamW, constant ``lr`` after 50 warmup steps).
        seed: seed of the heads and of the caption stream.
        batch_size: captions per step.
        state: a state handed to ``save`` by an interrupted call (with ``text_encoder`` as it
            was then): the stage continues from it exactly as if it had not stopped.
        save: called with the stage's state (step, heads, optimizer, caption stream; not the
            encoder) every ``save_every`` steps, so a caller can checkpoint it.
        lexicon: the meaning targets of :func:`token_targets`.

    Returns:
        the final loss and each head's accuracy on 2,000 fresh captions.
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    device = next(text_encoder.parameters()).device
    heads = ParseHeads(text_encoder.config.hidden_size).to(device)
    params = list(text_encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    start, loss = 0, torch.tensor(float("nan"))
    if state is not None and state.get("step", 0) > 0:
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        start, loss = int(state["step"]), torch.tensor(state["loss"])
    was_training = text_encoder.training
    text_encoder.train()
    for step in tqdm(range(start, steps), disable=not progress, desc="parse pretraining", mininterval=5):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50)
        captions, targets = parse_batch(batch_size, rng, tokenizer.model_max_length, lexicon)
        loss = _loss(_logits(text_encoder, tokenizer, heads, captions), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if save is not None and (step + 1) % save_every == 0 and step + 1 < steps:
            save({"step": step + 1, "heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                  "rng": rng.getstate(), "loss": float(loss.item())})
    text_encoder.train(was_training)
    return ParseReport(steps, float(loss.item()), parse_accuracy(text_encoder, tokenizer, heads, seed=seed + 1,
                                                                  lexicon=lexicon))
