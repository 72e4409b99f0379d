"""``diffpid serve``: the arguments and the command of the local web explorer.

The explorer itself: :mod:`diffpid.report.serve` (HTTP) and :mod:`diffpid.report.jobs` (the job runner).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from ..report.jobs import Explorer
from ..report.serve import start
from ..settings import Settings, add_settings_arguments, settings_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the options of ``diffpid serve`` on ``p``."""
    p.add_argument("--model", default=None,
                   help="diffusers model folder or hub id (default: the embedded shapes model, offline)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--workdir", default=None, help="folder for the reports (default: a temporary folder)")
    add_settings_arguments(p, Settings(samples=16))


def run(args: argparse.Namespace) -> int:
    """Run ``diffpid serve`` with parsed ``args`` until interrupted."""
    from ..explanation import resolve_model

    settings = settings_from_args(args)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="diffpid-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"loading {args.model or 'the embedded model'} ...", flush=True)
    model = resolve_model(args.model, device=settings.device, dtype=settings.torch_dtype())
    explorer = Explorer(model, settings, work)
    server = start(explorer, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"diffpid explorer on http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0
