"""The training objective of the shapes model: noise levels, the weighted epsilon MSE, the agreement term.

Noise levels are drawn as log-SNR from a truncated logistic (loc 1, scale 2: the range where
the information estimators integrate) mixed with a uniform share over the whole schedule,
mapped to the nearest DDPM timestep (:func:`sample_timesteps`). :func:`diffusion_loss` is
the epsilon-prediction MSE, each sample weighted as :class:`~diffpid.shapes.training.settings.TrainSettings`
says, plus the optional agreement of the caption's and the empty caption's predictions.
Every draw comes from the run's CPU generator, so a batch's loss is the same on every resume.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..model import ShapesComponents, tokenize

if TYPE_CHECKING:
    from .settings import TrainSettings


def logsnr_table(components: ShapesComponents) -> torch.Tensor:
    """``(1000,)`` log-SNR of every DDPM timestep, ``logit(alphas_cumprod)``."""
    ac = components.scheduler.alphas_cumprod.double()
    return torch.log(ac / (1 - ac)).float()


def sample_timesteps(n: int, table: torch.Tensor, settings: TrainSettings, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` training timesteps: nearest to a truncated-logistic log-SNR, or uniform."""
    lo = 1 / (1 + math.exp(-(settings.logsnr_low - settings.logsnr_loc) / settings.logsnr_scale))
    hi = 1 / (1 + math.exp(-(settings.logsnr_high - settings.logsnr_loc) / settings.logsnr_scale))
    u = lo + (hi - lo) * torch.rand(n, generator=generator)
    a = settings.logsnr_loc + settings.logsnr_scale * torch.log(u / (1 - u))
    t = (table[None, :] - a[:, None]).abs().argmin(1)
    uniform = torch.randint(0, len(table), (n,), generator=generator)
    pick = torch.rand(n, generator=generator) < settings.uniform_share
    return torch.where(pick, uniform, t)


def diffusion_loss(components: ShapesComponents, images: torch.Tensor, captions: tuple[str, ...],
                   settings: TrainSettings, generator: torch.Generator, table: torch.Tensor) -> torch.Tensor:
    """Epsilon-prediction MSE on one batch, with the agreement term of
    :attr:`TrainSettings.agree_weight` when it is set.

    Args:
        images: ``(n, 3, 32, 32)`` clean images in [-1, 1].
        captions: ``n`` captions.
    """
    n = images.shape[0]
    device = components.unet.device  # draws stay on the CPU generator (the same numbers on every device)
    t = sample_timesteps(n, table, settings, generator)
    eps = torch.randn(images.shape, generator=generator)
    ac = components.scheduler.alphas_cumprod[t].float().view(n, 1, 1, 1)
    x_t = (ac.sqrt() * images + (1 - ac).sqrt() * eps).to(device)
    encoder = components.text_encoder
    logsnr = table[t]
    agree = [k for k, (a, caption) in enumerate(zip(logsnr.tolist(), captions))
             if caption and a >= settings.agree_from] if settings.agree_weight > 0 else []
    with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in encoder.parameters())):
        ids = tokenize(components.tokenizer, tuple(captions) + (("",) if agree else ()))
        cond = encoder(ids.to(device)).last_hidden_state
    pred = components.unet(x_t, t.to(device), encoder_hidden_states=cond[:n]).sample
    per_sample = ((pred - eps.to(device)) ** 2).mean(dim=(1, 2, 3))
    if settings.loss_weight_cap > 0:
        per_sample = per_sample * torch.clamp(1 + torch.exp(-logsnr.to(device)), max=settings.loss_weight_cap)
    loss = per_sample.mean()
    if agree:  # the caption's and the empty caption's predictions, where a perfect model's agree
        k = torch.tensor(agree, device=device)
        empty = cond[n:].expand(len(agree), -1, -1)
        unconditional = components.unet(x_t[k], t.to(device)[k], encoder_hidden_states=empty).sample
        loss = loss + settings.agree_weight * ((pred[k] - unconditional) ** 2).mean(dim=(1, 2, 3)).sum() / n
    return loss
