"""The report page's inline style sheet and script (the page's hooks are described in :mod:`.html`)."""

CSS = """
.dp{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;background:#fff;
max-width:1560px;margin:0 auto;padding:.8rem 1.2rem;box-sizing:border-box;line-height:1.35}
.dp *{box-sizing:border-box}
.dp h1{font-size:1.45rem;margin:.1rem 0}.dp h2{font-size:1.12rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #ddd}
.dp h3{font-size:1rem;margin:.8rem 0 .3rem}
.dp .prompt{font-size:1.2rem;font-style:italic;margin:.15rem 0 .5rem;overflow-wrap:anywhere}
.dp .ident{font-size:.85rem;color:#333;display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.3rem 0}
.dp .ident dt{font-weight:600}.dp .ident dd{margin:0;overflow-wrap:anywhere}
.dp .note{color:#555;font-size:.8rem;max-width:62rem;overflow-wrap:anywhere}
.dp .warn{color:#7a4b00;background:#fff6e0;border-left:3px solid #e6a300;padding:.3rem .5rem;font-size:.82rem;
max-width:62rem}
.dp table{border-collapse:collapse;font-size:.84rem;margin:.4rem 0;max-width:100%}
.dp th,.dp td{border:1px solid #ddd;padding:.22rem .45rem;text-align:right;white-space:nowrap}
.dp th{background:#f4f4f6}.dp td.name,.dp th.name{text-align:left}
.dp td.text{text-align:left;white-space:normal;overflow-wrap:anywhere}
.dp .scroll{max-width:100%;overflow-x:auto}
@media (max-width:900px){.dp th,.dp td{white-space:normal;padding:.2rem .3rem}.dp table{font-size:.78rem}}
.dp td.nz,.dp span.nz{color:#888}.dp .zero{font-size:.7rem;color:#888;margin-left:.25rem}
.dp .bar{position:relative;height:.8rem;width:11rem;max-width:25vw;background:#f2f2f2}
.dp .bar .fill{position:absolute;left:0;top:0;bottom:0;background:#b35806}
.dp .bar .err{position:absolute;top:45%;height:10%;background:#222}
.dp .controls{position:sticky;top:0;z-index:2;background:#fffffff0;border-bottom:1px solid #ddd;padding:.35rem 0;
display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;font-size:.85rem;align-items:center}
.dp .controls label{white-space:nowrap}
.dp .maprow{border-bottom:1px solid #eee;padding:.5rem 0}
.dp .maprow h3{margin:.2rem 0 .35rem}
.dp .figs{display:flex;flex-wrap:wrap;gap:.7rem 1.1rem;align-items:flex-start}
.dp figure{margin:0}.dp figcaption{font-size:.76rem;margin-top:.2rem;color:#333;overflow-wrap:anywhere}
.dp .thumb img{display:block;width:var(--px);height:auto;image-rendering:pixelated;border:1px solid #ccc}
.dp .mapfig{width:calc(2 * var(--px) + .35rem);max-width:100%}
.dp .pair{display:flex;gap:.35rem}
.dp img.raw{display:block;width:var(--px);max-width:calc(50% - .2rem);height:auto;
image-rendering:pixelated;border:1px solid #ccc;cursor:crosshair}
.dp .overlay{position:relative;width:var(--px);max-width:calc(50% - .2rem);border:1px solid #ccc;cursor:crosshair}
.dp .overlay img{display:block;width:100%;height:auto;image-rendering:auto}
.dp .overlay .outline{position:absolute;inset:0;background-size:100% 100%;pointer-events:none}
.dp .cbar{height:.55rem;margin-top:.25rem;border:1px solid #ccc}
.dp .limits{display:flex;justify-content:space-between;font-size:.7rem;color:#444}
.dp .hidden{display:none}
.dp .readout{position:fixed;right:.6rem;bottom:.6rem;background:#222;color:#fff;font-size:.8rem;padding:.3rem .55rem;
border-radius:4px;pointer-events:none;opacity:0;transition:opacity .1s;z-index:5;max-width:90vw}
.dp .readout.on{opacity:.92}
.dp #curves{max-width:100%;height:auto}
.dp footer{margin-top:1.5rem}
"""

SCRIPT = r"""
(function(){
var root=document.getElementById(%(root)s);if(!root)return;
var data=JSON.parse(root.querySelector('script.dp-data').textContent);
var readout=root.querySelector('.readout');
function setScale(mode){
  root.querySelectorAll('figure.mapfig').forEach(function(f){
    f.querySelectorAll('img.map').forEach(function(i){i.src=i.getAttribute('data-src-'+mode);
      i.setAttribute('data-scale',mode);});
    f.querySelector('.cbar').style.background=f.getAttribute('data-'+mode+'-bar');
    f.querySelector('.lo').textContent=f.getAttribute('data-'+mode+'-lo');
    f.querySelector('.hi').textContent=f.getAttribute('data-'+mode+'-hi');
    f.querySelector('.scale-text').textContent=f.getAttribute('data-'+mode+'-text');
    f.setAttribute('data-scale',mode);});
}
root.querySelectorAll('input[name=scale]').forEach(function(r){r.addEventListener('change',function(){
  if(r.checked)setScale(r.value);});});
var sel=root.querySelector('select.word-select');
if(sel)sel.addEventListener('change',function(){
  root.querySelectorAll('.maprow[data-word]').forEach(function(row){
    row.classList.toggle('hidden',sel.value!=='*'&&row.getAttribute('data-word')!==sel.value);});});
root.querySelectorAll('input.kind-toggle').forEach(function(c){c.addEventListener('change',function(){
  root.querySelectorAll('figure.mapfig[data-kind='+c.value+']').forEach(function(f){
    f.classList.toggle('hidden',!c.checked);});});});
function fmt(v){if(!isFinite(v))return '\u2014';if(v===0)return '0';var a=Math.abs(v);
  return (a>=1e-3&&a<1e5)?v.toPrecision(3):v.toExponential(2);}
root.addEventListener('mousemove',function(e){
  var el=e.target.closest?e.target.closest('[data-key]'):null;
  if(!el||el.tagName==='FIGURE'){readout.classList.remove('on');return;}
  var d=data[el.getAttribute('data-key')];if(!d){readout.classList.remove('on');return;}
  var r=el.getBoundingClientRect();
  var col=Math.min(d.w-1,Math.max(0,Math.floor((e.clientX-r.left)/r.width*d.w)));
  var row=Math.min(d.h-1,Math.max(0,Math.floor((e.clientY-r.top)/r.height*d.h)));
  var v=d.q[row*d.w+col]*d.s;
  readout.textContent=d.label+' at map pixel ('+row+', '+col+'): '+fmt(v)+' '+d.unit;
  readout.classList.add('on');});
root.addEventListener('mouseleave',function(){readout.classList.remove('on');});
})();
"""
