"""The explorer's job runner: request validation, one explanation at a time, progress and the zip.

:class:`Explorer` checks a request from the page before any computation (a word not in the prompt or
unknown to the model, a bad pair, samples, seed, precision or image), queues it as a :class:`Job`, and
runs jobs one at a time on the loaded model, forwarding the engine's progress to the job; the HTTP side
is :mod:`diffpid.report.serve`.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import traceback
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DiffpidError, ImageError, ParameterError
from ..settings import Settings


@dataclass
class Job:
    """One explanation requested from the page."""

    id: str
    request: dict
    state: str = "queued"
    stage: str = "waiting for the engine"
    progress: float = 0.0
    error: str | None = None
    folder: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict:
        with self.lock:
            done = self.state == "done"
            return {"job": self.id, "state": self.state, "stage": self.stage, "progress": round(self.progress, 4),
                    "error": self.error, "report": f"/jobs/{self.id}/report.html" if done else None,
                    "download": f"/jobs/{self.id}/report.zip" if done else None}

    def update(self, **changes: Any) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(self, k, v)


class _Progress:
    """Stands in for the engine's tqdm bar during a job: forwards the samples done to the job."""

    current: Job | None = None
    runs = 0

    def __init__(self, total: int | None = None, disable: bool = False, desc: str = "", unit: str = "", **_: Any):
        type(self).runs += 1
        self.total, self.n, self.run = total or 1, 0, type(self).runs
        self._show()

    def _show(self) -> None:
        job = type(self).current
        if job is not None:
            job.update(stage=f"engine run {self.run}: {self.n} of {self.total} samples",
                       progress=min(1.0, self.n / self.total))

    def update(self, n: int = 1) -> None:
        self.n += n
        self._show()

    def close(self) -> None:
        pass


def decode_image(data_url: str | None) -> Any:
    """An uploaded image (``data:image/...;base64,...``) as an RGB ``PIL.Image``; ``None`` for no image.

    Raises:
        ImageError: not a base64 data URL, or not an image PIL can read.
    """
    if not data_url:
        return None
    from PIL import Image, UnidentifiedImageError

    from ..models.images import to_rgb

    if not isinstance(data_url, str) or "," not in data_url:
        raise ImageError("the uploaded file is not readable as an image; upload a PNG or JPEG")
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return to_rgb(im)
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError):
        raise ImageError("cannot read the uploaded image; upload a PNG or JPEG file") from None


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise ParameterError("words must be text: the words of the prompt to explain, separated by spaces")
    return [w.strip().lower() for w in value if w.strip()]


class Explorer:
    """The engine side of the explorer: validates requests and runs them one at a time.

    Args:
        model: a loaded :class:`~diffpid.models.base.Model`.
        settings: the estimator settings (samples is the page's default).
        workdir: where job folders go.
    """

    def __init__(self, model: Any, settings: Settings, workdir: Path) -> None:
        self.model, self.settings, self.workdir = model, settings, Path(workdir)
        self.jobs: dict[str, Job] = {}
        self.engine = threading.Lock()

    def check(self, request: dict) -> dict:
        """Validate a request before any computation; returns the arguments of :func:`diffpid.explain`.

        Raises:
            DiffpidError: an empty prompt, a word not in the prompt or unknown to the model, a bad
                pair, a bad number of samples or seed, an unreadable image.
        """
        from ..explanation import content_words
        from ..prompts import find_word

        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParameterError("the prompt is empty; type the text whose words you want explained")
        prompt = " ".join(prompt.split())
        words = _words(request.get("words")) or None
        pair = _words(request.get("pair")) or None
        for w in (words or []) + (pair or []):
            find_word(prompt, w)
        if pair is not None and len(pair) != 2:
            raise ParameterError(f"the PID pair is two words, got {len(pair)}: {' '.join(pair)}")
        if not (words or content_words(prompt)):
            raise ParameterError("the prompt has no content words; name the words to explain")
        samples = request.get("samples", self.settings.samples)
        seed = request.get("seed", self.settings.seed)
        try:
            samples, seed = int(samples), int(seed)
        except (TypeError, ValueError):
            raise ParameterError("samples and seed must be whole numbers") from None
        s = Settings.of(self.settings, samples=samples, seed=seed)
        precision = request.get("precision")
        if precision not in (None, ""):
            try:
                precision = float(precision)
            except (TypeError, ValueError):
                raise ParameterError("the precision is a relative standard error such as 0.1") from None
            s = s.replace(precision=precision)
        else:
            precision = None
        if s.samples > s.max_samples:
            raise ParameterError(f"at most {s.max_samples} samples per condition here (--max-samples)")
        self.model.encode_prompt(prompt)  # raises for words the model does not know (the embedded model)
        image = decode_image(request.get("image"))
        out = dict(prompt=prompt, words=words, pair=pair, samples=s.samples, seed=s.seed, image=image,
                   batch_size=s.batch_size, sampler=s.sampler)
        if precision is not None:
            out["precision"] = precision
        return out

    def submit(self, request: dict) -> Job:
        """Validate ``request`` and queue it; raises :class:`DiffpidError` for bad input."""
        kwargs = self.check(request)
        job = Job(uuid.uuid4().hex[:12], kwargs)
        self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"diffpid-job-{job.id}").start()
        return job

    def _run(self, job: Job) -> None:
        import sys

        from ..engine.estimate import estimate
        from ..explanation import explain

        engine = sys.modules[estimate.__module__]  # the engine's module, wherever it lives: its bar is replaced
        with self.engine:
            job.update(state="running", stage="generating the image" if job.request["image"] is None
                       else "encoding the image")
            saved = getattr(engine, "tqdm", None)
            try:
                _Progress.current, _Progress.runs = job, 0
                if saved is not None:
                    engine.tqdm = _Progress
                self.settings.apply_threads()
                expl = explain(job.request["prompt"], model=self.model, progress=True,
                               **{k: v for k, v in job.request.items() if k != "prompt"})
                job.update(stage="writing the report", progress=1.0)
                folder = expl.save(self.workdir / job.id / "report")
                job.update(state="done", stage="done", folder=folder)
            except DiffpidError as e:
                job.update(state="error", stage="failed", error=str(e))
            except Exception as e:  # noqa: BLE001  (shown in the page, the trace goes to the console)
                traceback.print_exc()
                job.update(state="error", stage="failed", error=f"internal error ({type(e).__name__}: {e})")
            finally:
                if saved is not None:
                    engine.tqdm = saved
                _Progress.current = None

    def zip_bytes(self, job: Job) -> bytes:
        """The job's report folder as a zip archive (``report/...``)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(job.folder.rglob("*")):
                if path.is_file():
                    z.write(path, Path("report") / path.relative_to(job.folder))
        return buf.getvalue()
