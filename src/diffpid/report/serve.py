"""``diffpid serve``: a local web explorer of explanations (standard library only).

Start it with ``diffpid serve`` (the embedded model, offline) or ``diffpid serve --model FOLDER_OR_HUB_ID``
and open the printed address. The page takes a prompt (and optionally an uploaded image to analyse
instead of generating one), the words to explain, the PID pair and the samples; it shows the engine's
progress, then the report of the run (the same page as ``report.html``: image, maps, tables; words
and colour scales switch in the page, without recomputing) and a link to download the report folder
as a zip. Input errors (a word not in the prompt, a word the embedded model does not know, an
unreadable image) are answered in the page. It binds to 127.0.0.1 unless ``--host`` says otherwise.

One job runs at a time; the model is loaded once, at start. Reports are written under ``--workdir``
(default: a temporary folder removed at exit).

HTTP API (JSON): ``POST /api/explain`` with ``{"prompt", "words", "pair", "samples", "precision" (a target
relative standard error, or null), "seed", "image" (a data URL or null)}`` answers ``{"job": id}`` or ``{"error": message}`` (status 400);
``GET /api/jobs/<id>`` answers ``{"state": "queued|running|done|error", "stage", "progress" (0..1),
"error", "report", "download"}``; ``GET /jobs/<id>/report.html``, ``GET /jobs/<id>/report.zip``.
"""

from __future__ import annotations

import json
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import DiffpidError, ParameterError
from .jobs import Explorer, Job

MAX_UPLOAD = 20 * 2**20
"""Largest request body (bytes) the explorer accepts (an uploaded image as a data URL)."""


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>diffpid explorer</title><link rel="icon" href="data:,">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f}
main{max-width:1560px;margin:0 auto;padding:.8rem 1.2rem;box-sizing:border-box}
h1{font-size:1.4rem;margin:.2rem 0}.note{color:#555;font-size:.85rem}
form{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.45rem .8rem;align-items:center;max-width:56rem}
label{font-weight:600;font-size:.9rem}input[type=text]{width:100%;box-sizing:border-box;font-size:1rem;padding:.3rem}
input[type=number]{width:7rem;font-size:1rem;padding:.25rem}
button{font-size:1rem;padding:.35rem 1.2rem;cursor:pointer}
#error{color:#8a1111;background:#fdeaea;border-left:4px solid #c62828;padding:.45rem .7rem;margin:.6rem 0;
max-width:56rem;overflow-wrap:anywhere}
#status{margin:.6rem 0;font-size:.9rem}progress{width:20rem;max-width:80vw;vertical-align:middle}
iframe{width:100%;border:1px solid #ddd;min-height:400px}
.hidden{display:none}
</style></head><body><main>
<h1>diffpid explorer</h1>
<p class="note">Model: <b id="model">@@model@@</b>. Type a prompt (or upload an image to analyse instead of
generating one), pick words and the PID pair, then run. Everything runs on this computer.</p>
<form id="form" autocomplete="off">
<label for="prompt">prompt</label><input type="text" id="prompt" name="prompt" value="@@prompt@@" required>
<label for="words">words</label><input type="text" id="words" name="words"
 placeholder="default: every content word, e.g. red circle blue">
<label for="pair">PID pair</label><input type="text" id="pair" name="pair"
 placeholder="two words; default: the two of highest CMI">
<label for="samples">samples</label><span><input type="number" id="samples" name="samples" min="1" max="@@max@@"
 value="@@samples@@"> per condition; the standard errors shrink as 1/&radic;samples</span>
<label for="precision">precision</label><span><input type="number" id="precision" name="precision" min="0.001"
 max="0.999" step="any" placeholder="off"> target relative standard error (e.g. 0.1): draws rounds of samples until
 every value reaches it</span>
<label for="seed">seed</label><input type="number" id="seed" name="seed" min="0" value="@@seed@@">
<label for="image">image</label><input type="file" id="image" name="image" accept="image/*">
<span></span><span><button type="submit" id="run">Explain</button></span>
</form>
<div id="error" role="alert" class="hidden"></div>
<div id="status" class="hidden"><span id="stage"></span> <progress id="progress" max="1" value="0"></progress></div>
<p id="download-line" class="hidden"><a id="download" href="#">Download the report folder (zip)</a> &middot;
<a id="open" href="#" target="_blank">open the report in its own tab</a></p>
<iframe id="report" class="hidden" title="report"></iframe>
</main>
<script>
(function(){
var form=document.getElementById('form'),err=document.getElementById('error'),status=document.getElementById('status');
var stage=document.getElementById('stage'),bar=document.getElementById('progress'),frame=document.getElementById('report');
var run=document.getElementById('run'),dl=document.getElementById('download-line');
function showError(msg){err.textContent=msg;err.classList.remove('hidden');status.classList.add('hidden');run.disabled=false;}
function readFile(input){return new Promise(function(ok,fail){var f=input.files[0];if(!f){ok(null);return;}
  var r=new FileReader();r.onload=function(){ok(r.result);};r.onerror=function(){fail(new Error('cannot read the file'));};
  r.readAsDataURL(f);});}
function poll(id){fetch('/api/jobs/'+id).then(function(r){return r.json();}).then(function(s){
  stage.textContent=s.stage;bar.value=s.progress;
  if(s.state==='error'){showError(s.error);return;}
  if(s.state==='done'){status.classList.add('hidden');run.disabled=false;
    frame.onload=function(){try{var doc=frame.contentDocument;
      var fit=function(){frame.style.height=(doc.documentElement.scrollHeight+20)+'px';};fit();
      if(window.ResizeObserver)new ResizeObserver(fit).observe(doc.body);}catch(e){}};
    frame.src=s.report;frame.classList.remove('hidden');
    document.getElementById('download').href=s.download;document.getElementById('open').href=s.report;
    dl.classList.remove('hidden');return;}
  setTimeout(function(){poll(id);},400);}).catch(function(e){showError('lost the connection to the explorer: '+e);});}
form.addEventListener('submit',function(ev){ev.preventDefault();err.classList.add('hidden');
  dl.classList.add('hidden');frame.classList.add('hidden');run.disabled=true;
  readFile(document.getElementById('image')).then(function(image){
    var body={prompt:form.prompt.value,words:form.words.value,pair:form.pair.value,
      samples:Number(form.samples.value),seed:Number(form.seed.value),image:image,
      precision:form.precision.value===''?null:Number(form.precision.value)};
    stage.textContent='checking the input';bar.value=0;status.classList.remove('hidden');
    return fetch('/api/explain',{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body)});
  }).then(function(r){return r.json();}).then(function(a){if(a.error){showError(a.error);return;}poll(a.job);})
  .catch(function(e){showError(String(e.message||e));});});
})();
</script></body></html>
"""


def make_handler(explorer: Explorer, default_prompt: str = "a big red circle left of a small blue box"):
    """The request handler class of an :class:`Explorer`."""
    fill = {"model": escape(str(getattr(explorer.model, "name", "model"))), "prompt": escape(default_prompt),
            "samples": explorer.settings.samples, "seed": explorer.settings.seed, "max": explorer.settings.max_samples}
    text = PAGE
    for key, value in fill.items():
        text = text.replace(f"@@{key}@@", str(value))
    page = text.encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        server_version = "diffpid-explorer"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet: no request log)
            pass

        def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(status, json.dumps(data).encode("utf-8"), "application/json")

        def _job(self, job_id: str) -> Job | None:
            return explorer.jobs.get(job_id)

        def do_GET(self) -> None:  # noqa: N802
            parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
            if not parts:
                return self._send(200, page, "text/html; charset=utf-8")
            if len(parts) == 3 and parts[:2] == ["api", "jobs"]:
                job = self._job(parts[2])
                return self._json(200, job.status()) if job else self._json(404, {"error": "no such job"})
            if len(parts) == 3 and parts[0] == "jobs":
                job = self._job(parts[1])
                if job is None or job.folder is None:
                    return self._json(404, {"error": "no such report"})
                if parts[2] == "report.html":
                    return self._send(200, (job.folder / "report.html").read_bytes(), "text/html; charset=utf-8")
                if parts[2] == "report.zip":
                    return self._send(200, explorer.zip_bytes(job), "application/zip",
                                      {"Content-Disposition": f'attachment; filename="diffpid-{job.id}.zip"'})
            return self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/api/explain":
                return self._json(404, {"error": "not found"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_UPLOAD:
                return self._json(400, {"error": f"the request must carry at most {MAX_UPLOAD >> 20} MB; "
                                                 "upload a smaller image"})
            try:
                request = json.loads(self.rfile.read(length).decode("utf-8"))
                if not isinstance(request, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError):
                return self._json(400, {"error": "the request is not a JSON object"})
            try:
                job = explorer.submit(request)
            except DiffpidError as e:
                return self._json(400, {"error": str(e)})
            return self._json(200, {"job": job.id})

    return Handler


def start(explorer: Explorer, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A server for ``explorer`` bound to ``host:port`` (``port=0``: a free port), not yet serving."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(explorer))
    except OSError as e:
        raise ParameterError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    server.daemon_threads = True
    return server
