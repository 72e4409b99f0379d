"""The recipe of a trained shapes model: what ``training.json`` records and how to read it back.

An exported model folder's ``training.json`` holds the final settings and architecture
(``settings``, ``config``), the step count, and a ``recipe``: the seed, the lineage
(``"from scratch"`` or the folder the weights started from), the ``diffpid train-shapes``
commands that reproduce the run (one per stage: a fresh start, then each resume that
changed a setting, the thread count or the device; each to the step its stage reached; a
change of the learning-rate schedule that leaves the rates of the steps already run as they
were, such as a cooldown planned after the run had started, is not a new stage), the
history of the training calls, and the diffpid, torch and Python versions.
:func:`recipe_summary` makes the short form a model's identity shows.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, fields
from typing import Any

# the train-shapes flag of each setting or architecture field that has one
FLAGS = {"batch_size": "--batch-size", "lr": "--lr", "loss_weight_cap": "--loss-weight-cap",
         "complete_share": "--complete-share", "parse_pretrain": "--parse-pretrain", "parse_lexicon": "--parse-lexicon",
         "freeze_text_encoder": "--freeze-text-encoder", "seed": "--seed", "checkpoint_every": "--checkpoint-every",
         "text_encoder": "--text-encoder", "pooled_text": "--pooled-text", "decay_from": "--decay-from",
         "decay_steps": "--decay-steps", "colorless_share": "--colorless-share",
         "empty_share": "--empty-share", "shapeless_share": "--shapeless-share",
         "bare_share": "--bare-share", "agree_weight": "--agree-weight",
         "agree_from": "--agree-from"}
RESUME_FLAGS = ("lr", "loss_weight_cap", "complete_share", "colorless_share", "empty_share", "shapeless_share",
                "bare_share",
                "agree_weight", "agree_from", "decay_from", "decay_steps")
"""Settings a resumed run may change (the others are the checkpoint's)."""
IGNORED = ("init_from",)


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return FLAGS[name] if value else "--no-" + FLAGS[name][2:]
    return f"{FLAGS[name]} {value:g}" if isinstance(value, float) else f"{FLAGS[name]} {value}"


def _differences(values: dict, defaults: dict) -> tuple[list[str], dict]:
    """Flags for the fields that differ from the defaults, and the differing fields no flag sets."""
    flags, unflagged = [], {}
    for k, v in values.items():
        if k in IGNORED or k not in defaults or (list(v) if isinstance(v, tuple) else v) == defaults[k]:
            continue
        if k in FLAGS:
            flags.append(_flag(k, v))
        else:
            unflagged[k] = v
    return flags, unflagged


def _defaults(cls: type) -> dict:
    return {f.name: (list(f.default) if isinstance(f.default, tuple) else f.default) for f in fields(cls)}


def _same_rates(a: dict, b: dict, lo: int, hi: int) -> bool:
    """Whether settings ``a`` and ``b`` differ at most in their learning-rate schedule, and give the
    same rate to every step from ``lo`` to ``hi - 1``."""
    from .settings import TrainSettings, learning_rate

    schedule = ("lr", "warmup", "decay_from", "decay_steps")
    if any(a.get(k) != b.get(k) for k in set(a) | set(b) if k not in schedule):
        return False
    known = {f.name for f in fields(TrainSettings)}
    sa = TrainSettings(**{k: v for k, v in a.items() if k in known})
    sb = TrainSettings(**{k: v for k, v in b.items() if k in known})
    return all(learning_rate(sa, s) == learning_rate(sb, s) for s in range(lo, hi))


def recipe_commands(history: list[dict], config: Any, reached: int | None = None) -> tuple[list[str], dict]:
    """The ``diffpid train-shapes`` commands that reproduce a run, and any setting no flag sets.

    A training call's ``--steps`` is the step it reached, not the one it aimed at: a call
    that was stopped (or killed) reached the step the next call resumed from, and the last
    call reached ``reached``. Consecutive calls that resumed with the same settings, threads
    and device are one command: resuming is bit-exact, so where a run was interrupted does
    not change its weights, while the thread count and the device do (a step's floats
    differ with them). A resume that changed only the learning-rate schedule, in a way that
    gives the steps its stage had run the same rates (a cooldown set after the run started,
    beginning at or after the step where it was set), carries the stage on with the new
    schedule: one command with that schedule from the start trains the same weights.
    Settings a history entry lacks (written before the setting existed) read as
    :data:`~diffpid.shapes.training.settings.LEGACY`.

    Args:
        history: the trainer's history (one entry per training call: ``from``, ``to``,
            ``resume``, ``settings`` as that call ran them, ``threads``, ``init_from``).
        config: the run's :class:`~diffpid.shapes.model.ShapesConfig`.
        reached: the step the last call reached (default: the step it aimed at).
    """
    from ..model import ShapesConfig
    from .settings import LEGACY, TrainSettings

    # per command: the step it starts from and reaches, threads/device, settings (and for a fresh start its
    # architecture flags); the settings' flags are made at the end, when merged stages have their last schedule
    stages: list[dict] = []
    unflagged: dict = {}
    for i, entry in enumerate(history):
        settings = {**entry.get("settings", {})}
        for k, v in LEGACY.items():
            settings.setdefault(k, v)
        to = history[i + 1]["from"] if i + 1 < len(history) else (reached if reached is not None else entry["to"])
        where = (f" --threads {entry['threads']}" if entry.get("threads") else "") + \
            (f" --device {entry['device']}" if entry.get("device") else "")
        if not entry.get("resume") or not stages:
            arch, unflagged = _differences(asdict(config), _defaults(ShapesConfig))
            start = [f"--init-from {_folder(entry['init_from'])}"] if entry.get("init_from") else []
            stages = [{"arch": [*arch, *start], "where": where, "from": 0, "to": to, "settings": settings}]
            continue
        if to == entry["from"]:
            continue  # trained nothing (an export, or a call stopped before its first checkpoint)
        last = stages[-1]
        if where == last["where"] and _same_rates(last["settings"], settings, last["from"], entry["from"]):
            last.update(to=to, settings=settings)  # the same stage, carried on
        else:
            stages.append({"where": where, "from": entry["from"], "to": to, "settings": settings})
    commands = []
    for k, st in enumerate(stages):
        if k == 0:
            flags, odd = _differences(st["settings"], _defaults(TrainSettings))
            unflagged.update(odd)
            flags = [*st["arch"], *flags]
        else:
            before = stages[k - 1]["settings"]
            flags = ["--resume", *(_flag(n, st["settings"][n]) for n in RESUME_FLAGS if st["settings"][n] != before[n])]
        commands.append(" ".join(["diffpid train-shapes --out RUN", f"--steps {st['to']}", *flags]) + st["where"])
    return commands, unflagged


def _folder(init_from: str) -> str:
    """The folder of a history's ``init_from``: histories written before 2026-12-07 recorded the
    provenance of :attr:`TrainSettings.init_from`, ``"FOLDER (unet, text_encoder)"``."""
    for parts in (" (unet, text_encoder)", " (unet)"):
        if init_from.endswith(parts):
            return init_from[: -len(parts)]
    return init_from


def recipe_record(settings: Any, config: Any, history: list[dict], reached: int | None = None) -> dict:
    """The ``recipe`` entry of ``training.json`` (see the module docstring); ``reached``: the final step."""
    import torch

    from ... import __version__

    commands, unflagged = recipe_commands(history, config, reached)
    record = {"seed": settings.seed, "lineage": f"from {settings.init_from}" if settings.init_from else "from scratch",
              "commands": commands, "diffpid_version": __version__, "torch_version": torch.__version__,
              "python_version": platform.python_version(), "history": history}
    if unflagged:
        record["settings_without_flags"] = unflagged
    return record


def recipe_summary(record: dict) -> str | None:
    """``"step N, from scratch, seed S"`` from a ``training.json`` record (``"step N"`` and the
    ``init_from`` of records written before recipes; ``None`` without a step count)."""
    steps = record.get("steps")
    if not isinstance(steps, (int, float)) or isinstance(steps, bool):
        return None
    recipe = record.get("recipe")
    if isinstance(recipe, dict):
        return f"step {int(steps)}, {recipe.get('lineage', 'lineage unknown')}, seed {recipe.get('seed')}"
    init = (record.get("settings") or {}).get("init_from")
    return f"step {int(steps)}" + (f", from {init}" if init else "")


def lineage_line(record: dict) -> str:
    """One sentence on how a model folder's weights were trained (for benchmark tables)."""
    recipe = record.get("recipe")
    steps = record.get("steps")
    if isinstance(recipe, dict) and recipe.get("commands"):
        how = "trained from random initialisation" if recipe.get("lineage") == "from scratch" else \
            f"trained {recipe.get('lineage')}"
        odd = recipe.get("settings_without_flags") or {}
        extra = f" and settings no flag sets ({', '.join(f'{k} {v}' for k, v in odd.items())})" if odd else ""
        return f"{how} with `{' && '.join(recipe['commands'])}`{extra}, {steps} steps"
    init = (record.get("settings") or {}).get("init_from")
    if init:
        return f"{steps} steps from the UNet of {init} (a lineage; see docs/embedded-model.md)"
    return f"{steps} steps (no recipe recorded)" if steps is not None else "no training record"
