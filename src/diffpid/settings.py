"""One settings object for every entry point, and the command-line flags that build it.

Every measure (MI, CMI, PID, dataset PID, attention, explain, dataset runs, benches) takes a
:class:`Settings` (or its fields as keywords, see :meth:`Settings.of`), and every ``diffpid``
subcommand builds one with :func:`add_settings_arguments` / :func:`settings_from_args`, so the
knobs, their names and their defaults live here and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError

#: the largest seed torch generators accept (a signed 64-bit integer)
MAX_SEED = 2**63 - 1

#: dtype names accepted everywhere (``--dtype`` and ``dtype=``)
DTYPES = ("float32", "float16", "bfloat16")

SAMPLER_NAMES = ("adaptive", "neyman", "sobol", "logistic", "published", "uniform")


@dataclass(frozen=True)
class Settings:
    """How the engine estimates: the same knobs, names and defaults for every entry point.

    Args:
        samples: ``(a, eps)`` draws per image and condition (denoiser calls per image and condition).
        sampler: log-SNR sampler name (``adaptive``, ``neyman``, ``sobol``, ``logistic``/``published``,
            ``uniform``) or a :class:`~diffpid.engine.channel.Sampler`.
        batch_size: most rows (images x conditions) per denoiser call.
        seed: seed of the estimator's draws (and of generation where an entry point generates).
        device: where a model loaded by diffpid runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``);
            ``None``: the GPU when there is one, else the CPU. A model passed in keeps its own.
        dtype: precision of a model loaded by diffpid (``float32``, ``float16``, ``bfloat16``);
            ``None``: the model's default (float32 for the embedded model).
        threads: torch CPU threads (``None``: torch's default). Two torch jobs sharing a
            machine's cores slow each other by up to 50x; give each a share.
        progress: show progress bars.
        precision: target relative standard error of every requested value (e.g. ``0.1``);
            ``None`` draws exactly ``samples``. With a target, ``samples`` is the first round.
        precision_floor: absolute standard error (nats) that counts as precise enough for values
            near zero, whose relative error cannot shrink.
        max_samples: cap on the draws a precision target may take per image.
    """

    samples: int = 64
    sampler: Any = "adaptive"
    batch_size: int = 64
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    progress: bool = False
    precision: float | None = None
    precision_floor: float = 0.05
    max_samples: int = 4096

    def __post_init__(self) -> None:
        _positive_int("samples", self.samples)
        _positive_int("batch_size", self.batch_size)
        _positive_int("max_samples", self.max_samples)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ParameterError(f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        if isinstance(self.sampler, str) and self.sampler not in SAMPLER_NAMES:
            raise ParameterError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}")
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.device is not None:
            object.__setattr__(self, "device", device_name(self.device))
        if self.precision is not None:
            if isinstance(self.precision, bool) or not isinstance(self.precision, (int, float)) \
                    or not 0 < self.precision < 1:
                raise ParameterError(f"precision is a relative standard error between 0 and 1 (e.g. 0.1), "
                                     f"got {self.precision!r}")
        if not isinstance(self.precision_floor, (int, float)) or self.precision_floor < 0:
            raise ParameterError(f"precision_floor must be a non-negative number of nats, got {self.precision_floor!r}")

    @classmethod
    def of(cls, settings: "Settings | None" = None, **overrides: Any) -> "Settings":
        """``settings`` (or the defaults) with the keyword arguments that are not ``None`` replacing fields.

        Entry points accept either a :class:`Settings` or its fields as keywords; this merges both.
        """
        base = cls() if settings is None else settings
        if not isinstance(base, Settings):
            raise ParameterError(f"settings must be a diffpid.Settings, got {type(base).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ParameterError(f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(names))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(base, **given) if given else base

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def torch_dtype(self) -> Any:
        """The ``torch.dtype`` of :attr:`dtype` (``None`` when unset)."""
        import torch

        return None if self.dtype is None else getattr(torch, self.dtype)

    def torch_device(self) -> Any:
        """The ``torch.device`` to load models on: :attr:`device`, else the GPU when there is one, else the CPU."""
        import torch

        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        check_device_available(self.device)
        return torch.device(self.device)

    def apply_threads(self) -> None:
        """Set torch's CPU threads to :attr:`threads` (no change when unset)."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)

    def to_dict(self) -> dict:
        """JSON-ready fields (a sampler object is recorded by its class name)."""
        out = dataclasses.asdict(self)
        if not isinstance(self.sampler, str):
            out["sampler"] = type(self.sampler).__name__
        return out


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a positive whole number, got {value!r}")


def dtype_name(dtype: Any) -> str:
    """Normalise ``"bf16"``, ``"bfloat16"``, ``torch.bfloat16`` ... to one of :data:`DTYPES`."""
    aliases = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    name = str(dtype).replace("torch.", "").lower()
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise ParameterError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return name


def device_name(device: Any) -> str:
    """Check the spelling of a device (``cpu``, ``cuda``, ``cuda:N``, ``mps``) and return it as a string."""
    import torch

    text = str(device).strip()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ParameterError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ParameterError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    return text


def check_device_available(device: str) -> None:
    """Raise a one-line error when ``device`` names an accelerator this machine does not have."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device {device!r} asks for a GPU but torch sees none (CPU build or no driver); "
                                 "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ParameterError(f"device {device!r}: Apple's MPS backend is not available here; use --device cpu")
    elif dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ParameterError(f"device {device!r}: no Intel XPU is available here; use --device cpu")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed must be from 0 to {MAX_SEED}, got {text}")
    return value


def _number(kind: type, ok: Any, expected: str):
    """An argparse type: ``kind(text)`` that must satisfy ``ok``, else "expected <expected>"."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


_positive = _number(int, lambda v: v >= 1, "a positive whole number")
_relative = _number(float, lambda v: 0 < v < 1, "a relative standard error between 0 and 1 (such as 0.1), or off")


def _fraction(text: str) -> float | None:
    """``--precision``: a relative standard error in (0, 1), or ``off`` for a fixed number of samples."""
    return None if text.strip().lower() in ("off", "none") else _relative(text)


def _checked(kind):
    def parse(text: str) -> str:
        try:
            return kind(text)
        except ParameterError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def add_settings_arguments(parser: argparse.ArgumentParser, defaults: Settings | None = None) -> None:
    """Add the settings flags, with their defaults in ``--help``, to a subcommand's parser.

    ``defaults`` lets a command change a default (e.g. fewer samples for a quick bench); the
    flags and their meaning stay the same everywhere.
    """
    d = defaults or Settings()
    g = parser.add_argument_group("estimator settings (the same for every command)")
    g.add_argument("--samples", type=_positive, default=d.samples,
                   help=f"(a, eps) draws per image and condition; the first round with --precision (default {d.samples})")
    g.add_argument("--precision", type=_fraction, default=d.precision,
                   help="target relative standard error of every value (e.g. 0.1), or off; draws rounds of samples "
                        f"until met (default {'off' if d.precision is None else d.precision})")
    g.add_argument("--max-samples", type=_positive, default=d.max_samples,
                   help=f"cap on the draws per image a --precision target may take (default {d.max_samples})")
    g.add_argument("--sampler", choices=SAMPLER_NAMES, default=d.sampler if isinstance(d.sampler, str) else "adaptive",
                   help=f"log-SNR sampler of the estimator (default {d.sampler})")
    g.add_argument("--batch-size", type=_positive, default=d.batch_size,
                   help=f"most rows (images x conditions) per denoiser call (default {d.batch_size})")
    g.add_argument("--seed", type=_seed, default=d.seed, help=f"seed of generation and of the estimator's draws "
                                                             f"(default {d.seed})")
    g.add_argument("--device", type=_checked(device_name), default=d.device,
                   help="cpu, cuda, cuda:N or mps (default: the GPU when there is one, else the CPU)")
    g.add_argument("--dtype", type=_checked(dtype_name), default=d.dtype,
                   help="float32, float16 or bfloat16 (default: the model's, float32 for the embedded model)")
    g.add_argument("--threads", type=_positive, default=d.threads,
                   help="torch CPU threads (default: torch's; give concurrent jobs a share of the cores)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                   help="no progress bars")


def add_items_per_call_argument(parser: argparse.ArgumentParser, what: str = "items", note: str = "") -> None:
    """Add ``--items-per-call G`` to a dataset command (``diffpid run``, ``diffpid bench ...``): at most ``G``
    of its ``what`` share denoiser calls (:func:`~diffpid.runs.runner.resolve_items_per_call` picks the
    default); ``note`` ends the help text."""
    from .runs.runner import ITEMS_PER_CALL

    text = (f"most {what} whose images share denoiser calls (default {ITEMS_PER_CALL} on a GPU, 1 on the CPU); "
            "the numbers and the run folder do not depend on it")
    parser.add_argument("--items-per-call", type=int, default=None, metavar="G",
                        help=text + (f"; {note}" if note else ""))


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` of parsed command-line arguments (and apply ``--threads`` now)."""
    s = Settings(samples=args.samples, sampler=args.sampler, batch_size=args.batch_size, seed=args.seed,
                 device=args.device, dtype=args.dtype, threads=args.threads, progress=args.progress,
                 precision=args.precision, max_samples=args.max_samples)
    s.apply_threads()
    return s
