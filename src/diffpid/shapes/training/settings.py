"""The settings of a shapes training run and its learning-rate schedule.

:class:`TrainSettings` is everything a run is trained with besides the architecture (the
checkpoint stores it; a resumed run keeps it unless a resumable flag changes it, see
:data:`~diffpid.shapes.training.recipe.RESUME_FLAGS`); :data:`LEGACY` is what records
written before a setting existed ran with; :func:`learning_rate` is the warmup-stable-decay
schedule. Training itself is :mod:`diffpid.shapes.training.train`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (stored in the checkpoint; a resumed run keeps them).

    Args:
        batch_size: scenes per step.
        lr: peak learning rate of AdamW.
        warmup: steps of linear warmup.
        decay_from, decay_steps: the rate stays at ``lr`` until step ``decay_from``, then
            falls linearly to zero over ``decay_steps`` steps (a warmup-stable-decay schedule);
            the run ends at ``decay_from + decay_steps`` (:attr:`decay_end`). ``decay_steps``
            0: a constant rate, no end (the lineage model's runs). Because the stable phase
            does not depend on where the run will end, a run stopped in it can be continued
            into any later cooldown with the same weights as if that had been its plan.
        weight_decay: AdamW weight decay.
        ema_decay: EMA decay (with the usual ``(1 + step) / (10 + step)`` ramp).
        grad_clip: max gradient norm.
        logsnr_loc, logsnr_scale: logistic proposal for the log-SNR of the noise.
        logsnr_low, logsnr_high: truncation of the log-SNR.
        uniform_share: share of timesteps drawn uniformly over all 1000.
        seed: seed of initialisation and of the training generator.
        checkpoint_every: steps between checkpoints.
        loss_weight_cap: 0 for the plain epsilon MSE; otherwise each sample's epsilon MSE is
            weighted by ``min(1 + 1/snr, cap)`` (the v-prediction weighting, capped), which
            puts the low log-SNR levels, where the caption decides colours and layout, back
            into the loss: there the epsilon error is ``snr`` times the image error, tiny.
        complete_share: share of each batch drawn from the complete two-object captions only
            (on top of the ones the world's process draws, about 18% of scenes): the captions
            the quality bar asks for, where binding and relations are learned. Caption
            meanings and the empty caption's marginal are unchanged
            (:func:`~diffpid.shapes.captions.sample_plan` with ``complete=True``).
        colorless_share: share of each batch drawn from the partial captions that leave
            every object's colour open (:func:`~diffpid.shapes.captions.sample_plan` with
            ``colorless=True``): the lone fruit "orange", a bare "circle" or "triangle", whose
            images are mixtures over the colours. The world's process draws the fruit
            without a colour word about once in 300 scenes, the token "orange" as a colour
            about 70 times as often; a UNet that rarely sees the fruit alone draws it orange.
        shapeless_share: share of each batch drawn from the partial captions that leave
            every object's shape open (:func:`~diffpid.shapes.captions.sample_plan` with
            ``shapeless=True``): a bare colour word ("red", "a big blue"), whose images are
            mixtures over the shapes; the colour words' counterpart of ``colorless_share``.
        bare_share: share of each batch drawn from the one-word captions without an article
            (:func:`~diffpid.shapes.captions.sample_plan` with ``bare=True``): "red",
            "circle", the fruit "orange", one object each. DiffusionPID's studies give a word
            alone as a prompt in exactly this form, and the world's process draws it about
            once in 220 scenes, a bare "red" once in 4,000 (the article is dropped a tenth of the time): a UNet that
            rarely sees a word without its article draws a bare "red" as one object no more
            often than the empty caption (docs/embedded-model.md, "The bare words").
        agree_weight, agree_from: 0 for none; otherwise, for the scenes of a batch whose noise
            is at log-SNR ``agree_from`` or above and whose caption is not empty, the loss adds
            ``agree_weight`` times the mean squared difference of the UNet's predictions with
            the caption and with the empty caption. In the shapes world the noisy image alone
            tells every object's colour, shape and place from about log-SNR 1 on (an object
            pixel stands ``exp(a/2)`` noise deviations clear and an object has dozens), so
            there a perfect model's conditional and unconditional denoisers agree; the
            information estimators integrate whatever a trained model's two disagree by.
        empty_share: share of each batch given the empty caption, with scenes of the world's
            process (:func:`~diffpid.shapes.captions.sample_plan` with ``empty=True``), on top
            of the world's own 12% of its draws: the unconditional denoiser every information
            is measured against.
        freeze_text_encoder: the text encoder is not trained with the UNet (as Stable
            Diffusion keeps its CLIP encoder frozen): it stays as it was initialised, parse
            pretrained (``parse_pretrain``) or copied by ``init_from``.
        parse_pretrain: a fresh run first trains the text encoder this many steps on the
            captions' parse (:mod:`diffpid.shapes.training.parse`: each token's role, meaning
            and the side of the image its object goes to); 0 for none.
        parse_lexicon: the parse's meaning targets name the shape a shape word stands for
            ("box" is a square, the fruit "orange" a circle), as in the shipped lineage
            model; default off: each word is its own meaning class and the UNet learns the
            synonym and the homonym from the images (see :mod:`diffpid.shapes.training.parse`).
        init_from: provenance only: the model folder whose weights started this run and the
            parts taken from it (empty for a run from random weights; see
            :func:`~diffpid.shapes.training.train.train`).
    """

    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 250
    decay_from: int = 6800
    decay_steps: int = 1200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    logsnr_loc: float = 1.0
    logsnr_scale: float = 2.0
    logsnr_low: float = -7.0
    logsnr_high: float = 9.0
    uniform_share: float = 0.2
    seed: int = 0
    checkpoint_every: int = 200
    loss_weight_cap: float = 50.0
    complete_share: float = 0.7
    colorless_share: float = 0.0
    empty_share: float = 0.0
    shapeless_share: float = 0.0
    bare_share: float = 0.0
    agree_weight: float = 0.0
    agree_from: float = 1.0
    freeze_text_encoder: bool = True
    parse_pretrain: int = 1500
    init_from: str = ""
    parse_lexicon: bool = False

    def batch_shares(self) -> dict[str, int]:
        """Scenes of each batch share (:func:`~diffpid.shapes.render.sample_batch`'s keyword
        arguments): each share rounded to whole scenes of the batch."""
        from ..render import BATCH_SHARES

        return {kind: round(getattr(self, f"{kind}_share") * self.batch_size) for kind in BATCH_SHARES}

    @property
    def decay_end(self) -> int | None:
        """The step where the cooldown reaches zero (``None`` for a constant rate)."""
        return self.decay_from + self.decay_steps if self.decay_steps > 0 else None


LEGACY = {"loss_weight_cap": 0.0, "complete_share": 0.0, "colorless_share": 0.0, "empty_share": 0.0,
          "shapeless_share": 0.0, "bare_share": 0.0, "agree_weight": 0.0, "agree_from": 1.0,
          "freeze_text_encoder": False, "parse_pretrain": 0,
          "parse_lexicon": True, "decay_from": 0, "decay_steps": 0}
"""What a checkpoint or history written before a setting existed ran with."""

DEFAULT_STEPS = 20000
"""Steps of a run with a constant rate when ``--steps`` is not given."""


def learning_rate(settings: TrainSettings, step: int) -> float:
    """The rate of the optimisation step that follows ``step`` completed steps."""
    rate = settings.lr * min(1.0, (step + 1) / max(1, settings.warmup))
    end = settings.decay_end
    if end is not None and step >= settings.decay_from:
        rate *= max(0.0, (end - step) / settings.decay_steps)
    return rate
