"""Training of the shapes model on freshly rendered shapes-world batches.

Standard recipe for a small pixel diffusion model: epsilon-prediction MSE (each sample
weighted by ``min(1 + 1/snr, 50)``, see :class:`TrainSettings`; the objective is
:mod:`diffpid.shapes.training.loss`), AdamW with
linear warmup, a constant rate, then a linear cooldown to zero over the run's last steps
(:func:`learning_rate`), gradient clipping, an EMA of the weights (the EMA is
what gets exported), classifier-free dropout through the world's empty captions, and
noise levels drawn as log-SNR from a truncated logistic (loc 1, scale 2: the range
where the information estimators integrate) mixed with a uniform share over the whole
schedule, mapped to the nearest DDPM timestep.

Checkpoints hold model, EMA, optimizer, step, settings and the generator state (all
randomness of training flows through one ``torch.Generator``), so a resumed run continues
exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ...errors import ParameterError
from ..model import ShapesComponents, ShapesConfig, build_components, config_from_dict, save_components
from ..render import BATCH_SHARES, sample_batch
from .loss import diffusion_loss, logsnr_table
from .settings import DEFAULT_STEPS, LEGACY, TrainSettings, learning_rate

CHECKPOINT = "checkpoint.pt"
PARSE_CHECKPOINT_EVERY = 100
"""Steps between checkpoints of the parse pretraining stage."""


class Trainer:
    """State of a training run: model, EMA, optimizer, step and the generator.

    Args:
        config: architecture (ignored when resuming: the checkpoint's is used).
        settings: optimisation settings.
    """

    def __init__(self, config: ShapesConfig = ShapesConfig(), settings: TrainSettings = TrainSettings(),
                 device: str | torch.device = "cpu"):
        self.config = config
        self.settings = settings
        self.device = torch.device(device)
        self.components = build_components(config, seed=settings.seed)
        self.components.unet.to(self.device)
        self.components.text_encoder.to(self.device)
        self.components.unet.train()
        self._settle_text_encoder()
        self.params = list(self.components.unet.parameters())
        if not settings.freeze_text_encoder:
            self.params += list(self.components.text_encoder.parameters())
        self.ema = [p.detach().clone() for p in self.params]
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.step = 0
        self.table = logsnr_table(self.components)
        self.recent: list[float] = []
        self.parse_state: dict | None = None
        """The parse pretraining stage's state while it is under way (see :meth:`pretrain_parse`)."""
        self.history: list[dict] = []
        """One entry per :func:`train` call: the steps it ran and the settings it overrode."""

    def init_from(self, folder: str | Path) -> list[str]:
        """Start this run's weights (and their EMA) from a saved shapes model.

        The UNet is copied (a plain UNet into one with coordinate channels: their input
        weights start at zero; into one with a pooled-text embedding: it starts adding zero;
        either way the model first computes what the old one did); the text encoder
        is copied when it has the same class and shapes, else it starts fresh.

        Returns:
            the parts copied (``["unet"]`` or ``["unet", "text_encoder"]``).

        Raises:
            ParameterError: the folder is not a shapes model, or its UNet does not fit this
                architecture.
        """
        from ..coord_unet import add_text_embedding, widen_conv_in
        from ..model import load_components

        folder = Path(folder)
        if not (folder / "unet" / "config.json").exists():
            raise ParameterError(f"--init-from {folder}: no unet/ in that folder; pass a shapes model folder "
                                 "(e.g. the shipped src/diffpid/assets/shapes)")
        source = load_components(folder)
        try:
            unet = self.components.unet
            unet.load_state_dict(add_text_embedding(widen_conv_in(source.unet.state_dict(), unet), unet))
        except RuntimeError as err:
            raise ParameterError(f"--init-from {folder}: its UNet does not fit this architecture "
                                 f"(channels {self.config.channels}, text width {self.config.text_hidden}): "
                                 f"{str(err).splitlines()[0]}") from None
        copied = ["unet"]
        if type(source.text_encoder) is type(self.components.text_encoder):
            try:
                self.components.text_encoder.load_state_dict(source.text_encoder.state_dict())
                copied.append("text_encoder")
            except RuntimeError:
                pass  # another width or depth: the text encoder starts fresh
        self._restart_ema()
        self.settings = replace(self.settings, init_from=f"{folder} ({', '.join(copied)})")
        return copied

    def pretrain_parse(self, steps: int, progress: bool = True, out: str | Path | None = None):
        """Train the text encoder on the captions' parse (:func:`~diffpid.shapes.training.parse.pretrain_text_encoder`)
        and restart the EMA from the result.

        With ``out``, the stage checkpoints into it every :data:`PARSE_CHECKPOINT_EVERY` steps (:attr:`parse_state`), and
        a trainer loaded from such a checkpoint continues the stage exactly where it stopped.

        Returns:
            the :class:`~diffpid.shapes.training.parse.ParseReport`.
        """
        from .parse import pretrain_text_encoder

        def save(state: dict) -> None:
            self.parse_state = state
            self.save(out)

        encoder = self.components.text_encoder
        encoder.requires_grad_(True)
        report = pretrain_text_encoder(encoder, self.components.tokenizer, steps, seed=self.settings.seed,
                                       progress=progress, state=self.parse_state,
                                       save=save if out is not None else None, save_every=PARSE_CHECKPOINT_EVERY,
                                       lexicon=self.settings.parse_lexicon)
        self.parse_state = None
        self._settle_text_encoder()
        self._restart_ema()
        self.settings = replace(self.settings, parse_pretrain=steps)
        return report

    def _settle_text_encoder(self) -> None:
        """Train mode and gradients for the text encoder unless the settings freeze it."""
        trainable = not self.settings.freeze_text_encoder
        self.components.text_encoder.train(trainable)
        self.components.text_encoder.requires_grad_(trainable)

    def _restart_ema(self) -> None:
        """The EMA starts again from the current weights (after they were replaced)."""
        with torch.no_grad():
            for e, p in zip(self.ema, self.params):
                e.copy_(p)

    def learning_rate(self) -> float:
        return learning_rate(self.settings, self.step)

    def train_step(self) -> float:
        """One optimisation step on a fresh batch; returns the loss."""
        n = self.settings.batch_size
        batch = sample_batch(n, self.generator, **self.settings.batch_shares())  # on the CPU
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        loss = diffusion_loss(self.components, batch.images, batch.captions, self.settings, self.generator, self.table)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.step}; resume from the last checkpoint with a lower --lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.settings.grad_clip)
        self.optimizer.step()
        self.step += 1
        decay = min(self.settings.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - decay)
        value = float(loss.item())
        self.recent = (self.recent + [value])[-200:]
        return value

    def state_dict(self) -> dict:
        return {
            "config": asdict(self.config), "settings": asdict(self.settings), "step": self.step,
            "unet": self.components.unet.state_dict(), "text_encoder": self.components.text_encoder.state_dict(),
            "ema": [e.clone() for e in self.ema], "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(), "recent": list(self.recent),
            "parse_state": self.parse_state, "history": list(self.history),
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``checkpoint.pt`` atomically (temporary file, then ``os.replace``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (CHECKPOINT + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, folder / CHECKPOINT)
        return folder / CHECKPOINT

    @classmethod
    def load(cls, path: str | Path, settings_override: dict | None = None, device: str | torch.device = "cpu"
             ) -> "Trainer":
        """Rebuild a trainer from a checkpoint file or a folder holding ``checkpoint.pt`` (on ``device``)."""
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT
        if not path.exists():
            raise ParameterError(f"no checkpoint at {path}; start without --resume or pass the --out of an earlier run")
        state = torch.load(path, map_location="cpu", weights_only=False)
        # checkpoints older than a setting ran without it
        stored = {**LEGACY, **state["settings"]}
        settings = replace(TrainSettings(**stored), **(settings_override or {}))
        trainer = cls(config_from_dict(state["config"]), settings, device)
        trainer.components.unet.load_state_dict(state["unet"])
        trainer.components.text_encoder.load_state_dict(state["text_encoder"])
        with torch.no_grad():
            for e, s in zip(trainer.ema, state["ema"]):
                e.copy_(s)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.generator.set_state(state["generator"])
        trainer.step = int(state["step"])
        trainer.recent = list(state["recent"])
        trainer.parse_state = state.get("parse_state")
        trainer.history = list(state.get("history", []))
        return trainer

    def ema_components(self) -> ShapesComponents:
        """A copy of the model carrying the EMA weights (eval mode)."""
        fresh = build_components(self.config, seed=self.settings.seed)
        fresh_params = list(fresh.unet.parameters())
        if self.settings.freeze_text_encoder:
            fresh.text_encoder.load_state_dict(self.components.text_encoder.state_dict())
        else:
            fresh_params += list(fresh.text_encoder.parameters())
        with torch.no_grad():
            for p, e in zip(fresh_params, self.ema):
                p.copy_(e.cpu())
        fresh.unet.eval()
        fresh.text_encoder.eval()
        return fresh

    def export(self, folder: str | Path) -> Path:
        """Save the EMA model in the diffusers folder layout with a ``training.json`` record."""
        from .recipe import recipe_record

        mean = sum(self.recent) / len(self.recent) if self.recent else float("nan")
        extra = {"steps": self.step, "recent_loss": mean, "settings": asdict(self.settings), "config": asdict(self.config),
                 "recipe": recipe_record(self.settings, self.config, self.history, self.step)}
        return save_components(self.ema_components(), folder, extra)


def train(out: str | Path, steps: int | None = None, resume: bool = False, config: ShapesConfig = ShapesConfig(),
          settings: TrainSettings = TrainSettings(), lr: float | None = None, export: str | Path | None = None,
          progress: bool = True, loss_weight_cap: float | None = None,
          init_from: str | Path | None = None, complete_share: float | None = None,
          device: str | torch.device = "cpu", decay_from: int | None = None,
          decay_steps: int | None = None, colorless_share: float | None = None,
          empty_share: float | None = None, shapeless_share: float | None = None,
          bare_share: float | None = None, agree_weight: float | None = None, agree_from: float | None = None) -> Trainer:
    """Train (or continue) until ``steps`` total steps, checkpointing into ``out``.

    Args:
        out: folder for ``checkpoint.pt`` and ``train.log``.
        steps: total number of steps to reach (a resumed run counts from its checkpoint);
            default: the end of the settings' cooldown (:attr:`TrainSettings.decay_end`), or
            :data:`DEFAULT_STEPS` for a constant rate. A run cannot go past its cooldown's end.
        resume: continue from ``out/checkpoint.pt`` (its architecture and settings win).
        config, settings: for a fresh run.
        lr: override the learning rate (fresh or resumed).
        loss_weight_cap: override the loss weighting (fresh or resumed; see :class:`TrainSettings`).
        complete_share: override the share of complete two-object scenes per batch (fresh or
            resumed; see :class:`TrainSettings`).
        colorless_share, shapeless_share, bare_share, empty_share: override the share of
            colourless or shapeless partial captions, of one-word captions without an article,
            or of empty captions, per batch (fresh or resumed; see :class:`TrainSettings`).
        agree_weight, agree_from: override the agreement term (fresh or resumed; see
            :class:`TrainSettings`).
        decay_from, decay_steps: override the cooldown (fresh or resumed; see :class:`TrainSettings`).
        export: folder to write the EMA model to when training stops.
        progress: show a tqdm bar.
        init_from: a fresh run only: start from this shapes model folder's weights (same
            channels and text width; see :meth:`Trainer.init_from`), for example to give the
            shipped model a new text encoder or coordinate inputs without relearning how to
            draw; recorded in the settings.
        device: where the model trains (``"cuda"`` on a GPU). Batches and noise are drawn on
            the CPU from the run's generator whatever the device, so a run can move between
            devices on resumption; the float results of a step differ by device (recorded
            in the history).
    """
    from tqdm import tqdm

    out = Path(out)
    shares = {"complete": complete_share, "colorless": colorless_share, "empty": empty_share,
              "shapeless": shapeless_share, "bare": bare_share}
    for kind, value in shares.items():
        if value is not None and not 0 <= value <= 1:
            raise ParameterError(f"--{kind}-share {value}: use a share from 0 to 1")
    if agree_weight is not None and not (agree_weight >= 0 and math.isfinite(agree_weight)):
        raise ParameterError(f"--agree-weight {agree_weight}: use a weight of 0 (none) or more")
    if agree_from is not None and not math.isfinite(agree_from):
        raise ParameterError(f"--agree-from {agree_from}: use a finite log-SNR, such as 1")
    if settings.parse_pretrain < 0:
        raise ParameterError(f"--parse-pretrain {settings.parse_pretrain}: use a number of steps, 0 for none")
    for name, value in (("--decay-from", decay_from), ("--decay-steps", decay_steps)):
        if value is not None and value < 0:
            raise ParameterError(f"{name} {value}: use a number of steps, 0 or more")
    override = {k: v for k, v in (("lr", lr), ("loss_weight_cap", loss_weight_cap),
                                  ("decay_from", decay_from), ("decay_steps", decay_steps),
                                  *((f"{kind}_share", v) for kind, v in shares.items()),
                                  ("agree_weight", agree_weight), ("agree_from", agree_from)) if v is not None}
    if resume:
        if init_from is not None:
            raise ParameterError("--init-from starts a fresh run; drop it when resuming (the checkpoint has the weights)")
        trainer = Trainer.load(out, override, device)
    else:
        if (out / CHECKPOINT).exists():
            raise ParameterError(f"{out / CHECKPOINT} exists; pass --resume to continue it or choose another --out")
        trainer = Trainer(config, replace(settings, **override), device)
        if init_from is not None:
            trainer.init_from(init_from)
    st = trainer.settings
    if sum(st.batch_shares().values()) > st.batch_size:
        kinds = BATCH_SHARES[::-1]  # the order of the flags in --help
        values = [getattr(st, f"{kind}_share") for kind in kinds]
        flags = [f"--{kind}-share {value:g}" for kind, value in zip(kinds, values)]
        raise ParameterError(f"{', '.join(flags[:-1])} and {flags[-1]} add up to {sum(values):g}, more than the batch "
                             f"of {st.batch_size} scenes once each is rounded to whole scenes; lower one of them")
    end = trainer.settings.decay_end
    if steps is None:
        steps = DEFAULT_STEPS if end is None else end
    if end is not None and steps > end:
        raise ParameterError(f"--steps {steps} goes past the end of the learning-rate cooldown (step {end}, where the "
                             f"rate is zero); use --steps {end} or less, or move the cooldown with --decay-from")
    out.mkdir(parents=True, exist_ok=True)
    trainer.history.append({"from": trainer.step, "to": steps, "resume": resume, "settings": asdict(trainer.settings),
                            "threads": torch.get_num_threads(),
                            **({"device": str(trainer.device)} if trainer.device.type != "cpu" else {}),
                            **({"init_from": str(init_from)} if init_from is not None else {})})
    log = open(out / "train.log", "a")
    if not resume and settings.parse_pretrain > 0:
        trainer.parse_state = {"step": 0}  # checkpointed at once: a run killed in its first steps resumes
        trainer.save(out)
    if trainer.parse_state is not None:
        report = trainer.pretrain_parse(trainer.settings.parse_pretrain, progress=progress, out=out)
        log.write(json.dumps({"parse_pretrain": report.steps, "loss": round(report.loss, 5),
                              "accuracy": {k: round(v, 4) for k, v in report.accuracy.items()}}) + "\n")
        log.flush()
        trainer.save(out)
    bar = tqdm(total=steps, initial=trainer.step, disable=not progress, mininterval=5, dynamic_ncols=True)
    start, first = time.time(), trainer.step
    try:
        while trainer.step < steps:
            loss = trainer.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            s = trainer.step
            if s % 20 == 0:
                per = (time.time() - start) / max(1, s - first)
                mean = sum(trainer.recent[-20:]) / len(trainer.recent[-20:])
                log.write(json.dumps({"step": s, "loss": round(mean, 5), "lr": trainer.learning_rate(),
                                      "sec_per_step": round(per, 3), "time": time.strftime("%H:%M:%S")}) + "\n")
                log.flush()
            if s % trainer.settings.checkpoint_every == 0 or s == steps:
                trainer.save(out)
    finally:
        bar.close()
        log.close()
    if trainer.step > first:
        trainer.save(out)
    if export is not None:
        trainer.export(export)
    return trainer
