"""The report: files, results.json against the Explanation and its schema, maps.npz, robust own and
shared colour scales, raw heat maps and map-dominant overlays, rounding to the standard error, HTML
hooks and escaping, the model identity, notebook display, atomic writes, and the plotting helpers.

Rendering tests use Explanations with known arrays (tests/report_fixtures.py); the CLI and an
end-to-end run through ``diffpid.explain`` on a tiny pixel-space model are in test_report_cli.py.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from html.parser import HTMLParser

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from diffpid.errors import OutputExistsError, ParameterError
from diffpid.report import color_scales, explanation_to_dict, plot_curves, plot_maps, render_html, report_maps
from diffpid.report import figures
from diffpid.report.format import error_decimals, format_pm, near_zero
from diffpid.report.maps import PERCENTILE, own_scale, robust_top, shared_scale, slugify, unique_slugs
from diffpid.report.overlays import bilinear, colorize, display_size, heatmap, outlines, overlay
from diffpid.report.results import results_schema
from diffpid.report.save import map_arrays, save_explanation

from report_fixtures import RAMP, synthetic_explanation


class Tags(HTMLParser):
    """Collects the attributes of every start tag."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def expl():
    return synthetic_explanation()


@pytest.fixture(scope="module")
def saved(expl, tmp_path_factory):
    return save_explanation(expl, tmp_path_factory.mktemp("rep") / "out")


def quick_html(e) -> str:
    """The report page without the curves figure (the slow part of a render)."""
    from diffpid.report.assets import build_assets

    return render_html(e, build_assets(e, overlays=False, curves=False))


def png_of_uri(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_save_writes_every_file(saved, expl):
    for name in ("report.html", "results.json", "maps.npz", "image.png", "curves.png"):
        assert (saved / name).is_file(), name
    expected = {f"maps/{k}_{w}.png" for k in ("mi", "cmi", "attention") for w in expl.words}
    expected |= {f"maps/{k}_{a}.png" for k in ("pid", "cpid") for a in ("redundancy", "unique_1", "unique_2", "synergy")}
    expected |= {f"maps/colorbar_{k}.png" for k in ("mi", "cmi", "pid", "cpid", "attention")}
    assert {str(p.relative_to(saved)) for p in (saved / "maps").iterdir()} == expected
    # overlays at the display size: a 16x16 image is enlarged 16 times to 256x256
    assert display_size(expl.image.shape) == (256, 256)
    with Image.open(saved / "maps" / "cmi_red.png") as im:
        assert im.size == (256, 256) and im.mode == "RGB"
    with Image.open(saved / "image.png") as im:
        arr = np.asarray(im)
    assert np.array_equal(arr[::16, ::16], expl.image)  # nearest-neighbour enlargement of the image itself
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no partial folder left


def test_results_json_equals_the_explanation_and_validates(saved, expl):
    data = json.loads((saved / "results.json").read_text())
    jsonschema.validate(data, results_schema())
    assert data["prompt"] == expl.prompt and data["model"] == "tiny-model" and data["seed"] == 7
    assert data["words"] == list(expl.words) and data["pair"] == ["red", "cat"]
    for w in expl.words:
        for kind, table in (("mi", expl.mi), ("cmi", expl.cmi)):
            got, info = data[kind][w], table[w]
            assert got["value"] == info.value and got["stderr"] == info.stderr
            assert got["standard_value"] == info.standard_value and got["standard_stderr"] == info.standard_stderr
            assert got["map_sum"] == pytest.approx(info.pixel_map.sum(), rel=1e-12)
            assert got["curve"]["mean"][0] == info.curve.mean[0] and got["curve"]["mean"][1] is None
            assert got["curve"]["count"] == info.curve.count.astype(int).tolist()
    for kind in ("pid", "cpid"):
        dec = getattr(expl, kind)
        for name in ("redundancy", "unique_1", "unique_2", "synergy", "per_snr_redundancy"):
            assert data[kind][name] == {"value": getattr(dec, name).value, "stderr": getattr(dec, name).stderr}
        assert data[kind]["mi_12"]["value"] == dec.mi_12.value
        assert data[kind]["covariance"] == dec.covariance.tolist()
        assert data[kind]["context"] == dec.context and data[kind]["conditions"] == list(dec.conditions)
    assert data["pid"]["synergy"]["value"] < 0
    assert data["parameters"] == {"samples": 16, "batch_size": 8, "sampler": "AdaptiveSampler",
                                  "redundancy": "integrated", "seed": 3, "device": "cpu", "dtype": "float32",
                                  "attention": True, "precision": None, "precision_floor": None,
                                  "max_samples": None}
    assert data["versions"]["torch"] == "2.13.0+cpu"
    # no model was asked (a synthetic explanation): the identity holds what the explanation knows
    assert data["model_identity"]["name"] == "tiny-model" and data["model_identity"]["dtype"] == "float32"
    assert data["model_identity"]["training_step"] is None and data["generation"] is None
    assert data["precision"] == {"target": None, "samples": {"words": 16, "decomposition": 16},
                                 "max_relative_stderr": pytest.approx(max(
                                     expl.cmi[w].stderr / expl.cmi[w].value for w in expl.words)), "met": None}
    assert data["decomposition_run"] == "separate"  # the fixture's PID informations are not the MI table's
    c = data["curves"][0]
    assert c["mmse"][1] is None and c["count"][1] == 0  # an empty bin is null, not NaN
    assert c["mmse"][0] == expl.curves[0].curve.mean[0] and c["nll"] == -1000.0
    assert data == explanation_to_dict(expl) == expl.to_dict()


@pytest.mark.parametrize("mutate", [
    lambda d: d["mi"]["red"].pop("stderr"),
    lambda d: d["pid"]["synergy"].update(value="0.1"),
    lambda d: d["parameters"].update(redundancy="max"),
    lambda d: d["maps"][0].update(key="mi/Red Cat"),
    lambda d: d.update(units="bits"),
    lambda d: d.pop("model_identity"),
    lambda d: d["model_identity"].update(training_step="10k"),
    lambda d: d.update(generation={"scheduler": "ddpm", "steps": 0, "guidance_scale": 3.0}),
    lambda d: d.update(decomposition_run="maybe"),
    lambda d: d["maps"][0].pop("own_scale"),
    lambda d: d["color_scales"]["mi"].update(percentile=101),
])
def test_schema_rejects_broken_results(expl, mutate):
    data = explanation_to_dict(expl)
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, results_schema())


def test_maps_npz_holds_the_raw_arrays(saved, expl):
    with np.load(saved / "maps.npz") as z:
        arrays = {k: z[k] for k in z.files}
    assert np.array_equal(arrays["image"], expl.image)
    for w in expl.words:
        assert np.array_equal(arrays[f"mi/{w}"], expl.mi[w].pixel_map)
        assert np.array_equal(arrays[f"cmi/{w}"], expl.cmi[w].pixel_map)
        assert np.array_equal(arrays[f"cmi_stderr/{w}"], expl.cmi[w].pixel_stderr)
        assert np.array_equal(arrays[f"mi_standard/{w}"], expl.mi[w].standard_map)
        assert np.array_equal(arrays[f"attention/{w}"], expl.attention[w])
    assert np.array_equal(arrays["pid/synergy"], expl.pid.synergy.pixel_map)
    assert np.array_equal(arrays["cpid/unique_2"], expl.cpid.unique_2.pixel_map)
    assert np.array_equal(arrays["cpid_stderr/redundancy"], expl.cpid.redundancy.pixel_stderr)
    assert set(arrays) == set(map_arrays(expl))


P99 = float(np.percentile(RAMP, PERCENTILE))


def test_colour_scales_are_robust_own_and_shared(saved, expl):
    maps = report_maps(expl)
    by = {(m.kind, m.name): m for m in maps}
    # own scale: [0, 99th percentile]; MI of the i-th word is (i + 1) * RAMP
    for i, w in enumerate(expl.words):
        s = own_scale(by[("mi", w)])
        assert (s.vmin, s.vmax, s.colormap, s.diverging) == (0.0, pytest.approx((i + 1) * P99), "inferno", False)
        assert s.true_max == pytest.approx((i + 1) * RAMP.max())
        assert shared_scale(by[("mi", w)], maps).vmax == pytest.approx(3 * P99)  # the group's largest top
    # synergy (-3 RAMP) is signed: diverging purple-orange, symmetric, on |v|
    syn = own_scale(by[("pid", "synergy")])
    assert syn.diverging and syn.colormap == "PuOr_r" and syn.vmax == pytest.approx(3 * P99) and syn.vmin == -syn.vmax
    red = own_scale(by[("pid", "redundancy")])
    assert not red.diverging and red.vmax == pytest.approx(P99)
    # the shared PID scale: the top of the hottest atom; sequential atoms stay sequential on it
    assert shared_scale(by[("pid", "redundancy")], maps).vmax == pytest.approx(3 * P99)
    assert not shared_scale(by[("pid", "redundancy")], maps).diverging
    scales = {s.group: s for s in color_scales(maps)}
    assert scales["pid"].diverging and scales["cpid"].vmax == pytest.approx(0.3 * P99)
    data = json.loads((saved / "results.json").read_text())
    assert data["color_scales"]["mi"]["vmax"] == pytest.approx(3 * P99)
    assert data["color_scales"]["mi"]["true_max"] == pytest.approx(3 * RAMP.max())
    entry = next(e for e in data["maps"] if e["key"] == "mi/red")
    assert entry["own_scale"]["vmax"] == pytest.approx(P99) and entry["shared_scale"]["vmax"] == pytest.approx(3 * P99)
    tags = parse((saved / "report.html").read_text())
    figs = tags.find("figure", **{"class": "mapfig", "data_kind": "mi"})
    assert len(figs) == 3
    for fig in figs:
        k = expl.words.index(fig["data-name"]) + 1
        assert float(fig["data-own-vmax"]) == pytest.approx(k * P99)
        assert float(fig["data-shared-vmax"]) == pytest.approx(3 * P99)


def test_a_few_hot_pixels_do_not_set_the_scale():
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 1, size=(32, 32))
    hot = v.copy()
    hot[0, :3] = 50.0  # three hot pixels out of 1024
    assert robust_top(hot, signed=False) == pytest.approx(robust_top(v, signed=False), rel=0.02)
    assert robust_top(v, signed=False) == pytest.approx(np.percentile(v, 99))
    e = synthetic_explanation(words=("red",), pair=None, attention=False)
    e.cmi["red"] = dataclasses.replace(e.cmi["red"], pixel_map=hot)
    s = own_scale(next(m for m in report_maps(e) if m.key == "cmi/red"))
    assert s.vmax < 1.0 and s.true_max == 50.0 and s.clipped
    assert "99th percentile; max 50" in s.describe()
    assert robust_top(np.zeros((4, 4)), False) == 1.0  # an all-zero map keeps a usable scale
    sparse = np.zeros((40, 40))
    sparse[0, 0] = 2.0
    assert robust_top(sparse, False) == 2.0  # a percentile of zero falls back to the maximum


def test_raw_heat_map_is_the_map_on_its_colour_scale(expl):
    from matplotlib import colormaps

    m = next(m for m in report_maps(expl) if m.key == "cmi/table")
    s = own_scale(m)
    raw = heatmap(m.values, s)
    assert raw.shape == (8, 8, 3)  # the model's resolution, not the image's
    want = np.round(np.asarray(colormaps["inferno"](np.clip(m.values / s.vmax, 0, 1)))[..., :3] * 255)
    assert np.abs(raw.astype(float) - want).max() <= 1


def _square_image() -> np.ndarray:
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[4:12, 4:12] = (220, 20, 20)  # a red square on black
    return img


def test_outlines_follow_the_objects():
    edge = outlines(_square_image())
    assert edge.shape == (256, 256)
    rows, cols = np.nonzero(edge)
    # the square spans display pixels 64..191; its contour lies at its border (bilinear mid level)
    assert rows.min() >= 60 and rows.max() <= 195 and cols.min() >= 60 and cols.max() <= 195
    assert edge[128, 60:70].any() and edge[128, 186:196].any()  # left and right sides
    assert not edge[100:150, 100:150].any() and not edge[:40].any()  # nothing inside or in the background
    assert not outlines(np.full((16, 16, 3), 90, dtype=np.uint8)).any()  # a flat image has none


def test_overlay_keeps_the_map_dominant(expl):
    img = _square_image()
    m = next(m for m in report_maps(expl) if m.key == "mi/table")
    s = own_scale(m)
    out = overlay(img, m.values, s)
    assert out.shape == (256, 256, 3)
    base = np.round(colorize(bilinear(m.values, (256, 256)), s) * 255)
    edge = outlines(img)
    far = ~edge
    far[1:] &= ~edge[:-1]
    far[:-1] &= ~edge[1:]
    far[:, 1:] &= ~edge[:, :-1]
    far[:, :-1] &= ~edge[:, 1:]
    # away from the outlines the overlay is exactly the heat map (the image does not tint it) ...
    assert np.abs(out[far].astype(float) - base[far]).max() <= 1
    # ... on them, light lines
    assert out[edge].mean() > base[edge].mean() + 40
    # over a random image the overlay still tracks the map (the old blend tracked the image)
    noisy = np.random.default_rng(3).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    def blocks(a):  # the median of every 16 x 16 display block
        return np.median(a.mean(axis=2).reshape(16, 16, 16, 16).transpose(0, 2, 1, 3).reshape(16, 16, -1), axis=2)
    got, want = blocks(overlay(noisy, m.values, s).astype(float)), blocks(base)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("value,stderr,text", [
    (5.247, 1.31, "5.2 ± 1.3"), (0.5247, 0.0921, "0.52 ± 0.09"), (0.5247, 1.0, "0.5 ± 1.0"),
    (0.09942, 1.8, "0.1 ± 1.8"), (0.0, 1.3, "0.0 ± 1.3"), (5.155, float("nan"), "5.16 ± —"),
    (float("nan"), 0.1, "—"), (None, None, "—"), (123.4, 45.0, "120 ± 40"), (1.0, 0.0996, "1.00 ± 0.10"),
    (-0.0001, 0.5, "0.0 ± 0.5"), (0.0354, 0.0354, "0.035 ± 0.035"), (0.0356, 0.0356, "0.04 ± 0.04"),
    (2.5, 0.0, "2.50 ± 0"), (0.001234, None, "0.00123"),
])
def test_values_are_rounded_to_their_standard_error(value, stderr, text):
    assert format_pm(value, stderr) == text


def test_error_decimals_and_near_zero():
    assert error_decimals(1.3) == 1 and error_decimals(0.09) == 2 and error_decimals(0.0354) == 3
    assert error_decimals(0.999) == 1  # rounds up to 1.0: two digits
    assert error_decimals(45.0) == -1
    assert near_zero(0.5, 0.25) and not near_zero(0.51, 0.25) and near_zero(-0.4, 0.2)
    assert not near_zero(1.0, float("nan")) and not near_zero(None, 1.0)


@pytest.mark.parametrize("shape,size", [((8, 8), (256, 256)), ((5, 7), (13, 17)), ((64, 64), (384, 384))])
def test_bilinear_matches_torch_interpolate(shape, size):
    v = np.random.default_rng(1).normal(size=shape)
    ref = torch.nn.functional.interpolate(torch.from_numpy(v)[None, None], size=size, mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    assert np.allclose(bilinear(v, size), ref, atol=1e-12)


def test_display_sizes():
    assert display_size((32, 32, 3)) == (256, 256)
    assert display_size((300, 380, 3)) == (300, 380)
    assert display_size((1024, 768, 3)) == (384, 288) and display_size((512, 512, 3)) == (384, 384)


def test_html_is_self_contained_with_hooks(saved, expl):
    html = (saved / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    tags = parse(html)
    for t, a in tags.tags:
        for attr in ("src", "href"):
            assert attr not in a or a[attr].startswith("data:"), (t, a)
        assert not (t == "script" and "src" in a)  # inline scripts only
    image = tags.find("img", id="image")
    assert len(image) == 1 and png_of_uri(image[0]["src"]).size == (256, 256)
    raws = tags.find("img", **{"class": "map raw"})
    assert len(raws) == 3 * 3 + 2 * 4
    for m in raws:  # raw maps at the model's resolution, on both scales
        for key in ("src", "data-src-own", "data-src-shared"):
            assert png_of_uri(m[key]).size == (8, 8)
    with np.load(saved / "maps.npz") as z:
        for m in raws:
            values = z[m["data-key"]]
            lum = np.asarray(png_of_uri(m["src"]).convert("L"), dtype=float)
            assert np.corrcoef(lum.ravel(), values.ravel())[0, 1] > 0.95 or m["data-name"] == "synergy"
    assert {m["data-word"] for m in tags.find("img", **{"class": "map raw", "data_kind": "cmi"})} == set(expl.words)
    assert {m["data-atom"] for m in tags.find("img", **{"class": "map raw", "data_kind": "pid"})} == {
        "redundancy", "unique_1", "unique_2", "synergy"}
    assert len(tags.find("div", **{"class": "overlay"})) == len(raws)
    # the ranking: words by CMI, highest first (the fixture's CMI grows with the word's index)
    assert [r["data-word"] for r in tags.find("tr", **{"class": "rank-row"})] == ["table", "cat", "red"]
    assert [r["data-word"] for r in tags.find("div", **{"class": "maprow"})] == ["table", "cat", "red"]
    rows = tags.find("tr", **{"class": "word-row"})
    assert [r["data-word"] for r in rows] == list(expl.words)
    cells = [a for t, a in tags.tags if t == "td" and a.get("data-quantity") == "cmi"]
    assert [float(c["data-value"]) for c in cells] == [expl.cmi[w].value for w in expl.words]
    assert [float(c["data-stderr"]) for c in cells] == [expl.cmi[w].stderr for w in expl.words]
    pid_cells = [a for t, a in tags.tags if t == "td" and a.get("data-quantity") == "synergy"]
    assert [float(c["data-value"]) for c in pid_cells] == [expl.pid.synergy.value, expl.cpid.synergy.value]
    assert len(tags.find("table", id="parameters")) == 1 and len(tags.find("table", id="versions")) == 1
    assert png_of_uri(tags.find("img", id="curves")[0]["src"]).size[0] > 300
    assert len(tags.find("input", name="scale")) == 2 and len(tags.find("select", **{"class": "word-select"})) == 1


def test_html_numbers_follow_their_errors(expl):
    html = quick_html(expl)
    mi = expl.mi["red"]  # value 31.5 * ... with stderr 0.1 * value + 0.01
    assert f">{format_pm(mi.value, mi.stderr)}</td>" in html
    assert "0.5247" not in html and "± nan" not in html
    # the standard CMI of "red" is 0 with error 0.05: within two errors of zero, greyed
    tags = parse(html)
    cell = next(a for t, a in tags.tags if t == "td" and a.get("data-quantity") == "cmi_standard")
    assert "nz" in cell["class"].split()
    e = synthetic_explanation(words=("red", "cat"), pair=None, attention=False)
    one = dataclasses.replace(e.cmi["red"], stderr=float("nan"), samples=1)
    e.cmi["red"] = one
    assert f"{format_pm(one.value)} ± —" in quick_html(e)


def test_hover_data_holds_the_map_values(saved, expl):
    html = (saved / "report.html").read_text()
    start = html.index('<script type="application/json" class="dp-data">') + len(
        '<script type="application/json" class="dp-data">')
    data = json.loads(html[start:html.index("</script>", start)])
    for m in report_maps(expl):
        d = data[m.key]
        got = np.asarray(d["q"], dtype=float).reshape(d["h"], d["w"]) * d["s"]
        assert np.abs(got - m.values).max() <= np.abs(m.values).max() / 30000 + 1e-15


def test_pid_maps_that_do_not_sum_are_labelled(saved, expl):
    html = (saved / "report.html").read_text()
    labels = html.count('class="nosum"')
    assert labels == 8  # the four atoms of PID and of CPID in the integrated mode
    s = report_maps(expl)
    atom = next(m for m in s if m.key == "pid/redundancy")
    assert not atom.sums_to_value and f"map sums to {format_pm(atom.map_sum)}" in html
    assert all(m.sums_to_value for m in s if m.kind in ("mi", "cmi"))
    per_snr = synthetic_explanation()
    per_snr = dataclasses.replace(per_snr, pid=dataclasses.replace(per_snr.pid, redundancy_mode="per_snr"), cpid=None)
    assert quick_html(per_snr).count('class="nosum"') == 0


def test_pid_informations_agree_with_the_word_table_or_say_why():
    e = synthetic_explanation()
    html = quick_html(e)
    assert 'id="pid-consistency" data-same-run="false"' in html and "second engine run" in html
    # the same run: the PID's I(red), I(cat) are the MI table's values
    same = dataclasses.replace(e, pid=dataclasses.replace(e.pid, mi_1=e.mi["red"], mi_2=e.mi["cat"]))
    html = quick_html(same)
    assert 'data-same-run="true"' in html and "second engine run" not in html
    assert explanation_to_dict(same)["decomposition_run"] == "same"
    assert explanation_to_dict(same)["precision"]["samples"]["decomposition"] is None


def test_model_identity_of_the_embedded_model(tmp_path):
    import hashlib

    from diffpid.shapes.model import default_model_path, load_shapes_model
    from diffpid.report.identity import model_identity

    folder = default_model_path()
    ident = model_identity(load_shapes_model(device="cpu"))
    training = json.loads((folder / "training.json").read_text())
    generation = json.loads((folder / "generation.json").read_text())
    weights = (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert ident["training_step"] == training["steps"] and ident["generation"] == generation
    assert ident["weights_sha256"] == hashlib.sha256(weights).hexdigest()[:16]
    assert ident["dtype"] == "float32" and ident["device"] == "cpu" and ident["name"] == "shapes"
    assert ident["revision"].startswith(f"step {training['steps']}, from ") and ident["source"] == str(folder)
    e = dataclasses.replace(synthetic_explanation(), model_identity=ident)
    data = explanation_to_dict(e)
    jsonschema.validate(data, results_schema())
    assert data["generation"] == generation and data["model_identity"]["training_step"] == training["steps"]
    html = quick_html(e)
    assert f"training step {training['steps']}" in html and "ddpm, 50 steps, guidance 3.0; seed 7" in html


def test_revision_of_a_hub_snapshot():
    from diffpid.report.identity import _revision, model_identity

    commit = "0123456789abcdef0123456789abcdef01234567"
    assert _revision(f"/cache/models--org--sd/snapshots/{commit}") == commit
    assert _revision("org/not-in-the-cache") is None and _revision(None) is None

    from diffpid.models.base import ModelIdentity

    class Bare:  # a model whose identity tells nothing but its name and backend
        device = "cpu"

        def identity(self):
            return ModelIdentity("bare", "test", "Bare", dtype=None)

    ident = model_identity(Bare())
    assert ident["name"] == "bare" and ident["class"] == "Bare" and ident["family"] == "test"
    assert all(ident[k] is None for k in ("source", "revision", "training_step", "weights_sha256", "dtype",
                                          "generation"))


def test_notebook_display():
    e = synthetic_explanation()
    html = e._repr_html_()
    tags = parse(html)
    assert len(tags.find("img", **{"class": "map raw"})) == 3 * 3 + 2 * 4 and not tags.find("img", id="curves")
    assert html.count('class="dp"') == 1 and e._repr_html_() != html  # a fresh root id per display
    info = e.mi["red"]._repr_html_()
    assert format_pm(e.mi["red"].value, e.mi["red"].stderr) in info and len(parse(info).find("img")) == 1
    pid = e.pid._repr_html_()
    assert len(parse(pid).find("img")) == 4 and format_pm(e.pid.synergy.value, e.pid.synergy.stderr) in pid
    assert "per-pixel minima" in pid
    from diffpid.information import Information

    batch = Information(np.array([1.0, 2.0]), np.array([0.1, 3.0]), np.zeros((2, 4, 4)), np.zeros((2, 4, 4)),
                        np.array([1.0, 2.0]), np.array([0.1, 0.1]), np.zeros((2, 4, 4)), e.mi["red"].curve, 8)
    text = batch._repr_html_()
    assert "2 images" in text and "1.00 ± 0.10" in text and 'class="nz"' in text  # 2 ± 3 is compatible with zero


def test_html_escapes_user_text():
    prompt = 'a <script>alert("x")</script> red & cat'
    e = synthetic_explanation(prompt=prompt, words=("red", "cat", "<b>x"), pair=None, attention=False)
    html = quick_html(e)
    assert "<script>alert" not in html and "<b>x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; red &amp; cat" in html
    tags = parse(html)
    assert [r["data-word"] for r in tags.find("tr", **{"class": "word-row"})] == ["red", "cat", "<b>x"]
    assert "pid-values-missing" in html and not tags.find("table", id="pid-values")


def test_slugs_are_file_safe_and_unique():
    assert slugify("Café's") == "cafe-s" and slugify("<b>") == "b" and slugify("猫") == "word"
    assert unique_slugs(["red", "Red!", "red?", "猫", "狗"]) == {
        "red": "red", "Red!": "red-2", "red?": "red-3", "猫": "word-4", "狗": "word-5"}
    e = synthetic_explanation(words=("red", "Red!", "猫"), pair=None, attention=False)
    assert [m.filename for m in report_maps(e) if m.kind == "mi"] == ["maps/mi_red.png", "maps/mi_red-2.png",
                                                                      "maps/mi_word-3.png"]
    assert explanation_to_dict(e)["slugs"] == {"red": "red", "Red!": "red-2", "猫": "word-3"}


def test_existing_output_is_refused(expl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match=r"exists and is not a diffpid report folder"):
        save_explanation(expl, out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    save_explanation(expl, tmp_path / "report")
    with pytest.raises(OutputExistsError, match=r"exists; pass --overwrite"):
        save_explanation(expl, tmp_path / "report")


def test_overwrite_replaces_a_previous_report(expl, tmp_path):
    out = tmp_path / "out"
    save_explanation(expl, out)
    (out / "report.html").write_text("old")
    assert save_explanation(expl, out, overwrite=True) == out
    assert (out / "report.html").read_text() != "old" and (out / "results.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old folder is deleted, nothing aside


def test_overwrite_never_replaces_other_files(expl, tmp_path):
    from diffpid.errors import OutputPathError

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("old")
    with pytest.raises(OutputPathError, match=r"replaces only a previous diffpid report.*no results.json"):
        save_explanation(expl, out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "old"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_write_leaves_nothing_half_written(expl, tmp_path, monkeypatch, error, existing):
    calls = []

    def broken(e):
        calls.append(sorted(p.name for p in tmp_path.iterdir()))  # what exists at the moment of failure
        raise error("figure failed")

    out = tmp_path / "sub" / "out"
    if existing:
        save_explanation(expl, out)
        (out / "report.html").write_text("old")
    monkeypatch.setattr(figures, "curves_png", broken)
    with pytest.raises(error, match="figure failed"):
        save_explanation(expl, out, overwrite=True)
    assert calls  # the failure happened inside the write
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == (["out"] if existing else [])
    if existing:
        assert (out / "report.html").read_text() == "old" and (out / "results.json").is_file()


def test_partial_folder_exists_during_the_write(expl, tmp_path, monkeypatch):
    seen = []

    def spy(e):
        seen.extend(p.name for p in tmp_path.iterdir())
        seen.extend(p.name for p in next(tmp_path.iterdir()).iterdir())
        raise RuntimeError("stop")

    monkeypatch.setattr(figures, "curves_png", spy)
    with pytest.raises(RuntimeError):
        save_explanation(expl, tmp_path / "out")
    assert seen[0].startswith(".out.partial-") and "results.json" in seen and "maps.npz" in seen
    assert list(tmp_path.iterdir()) == []


def test_plot_helpers_return_figures(expl):
    from matplotlib.figure import Figure

    fig = plot_maps(expl, kind="pid")
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4 and len(fig.axes) == 4 + 4  # four atoms, each with its own colour bar
    assert {tuple(ax.images[0].get_array().shape[:2]) for ax in panels} == {(256, 256)}
    shared = plot_maps(expl, kind="pid", shared=True)
    assert len(shared.axes) == 4 + 2  # one bar for the sequential atoms, one for synergy's diverging scale
    assert len(plot_maps(expl, kind="cmi", shared=True).axes) == 3 + 1  # one shared colour bar
    raw = plot_maps(expl, kind="cmi", raw=True)
    assert {tuple(ax.images[0].get_array().shape[:2]) for ax in raw.axes if ax.images} == {(8, 8)}
    # the synergy panel uses the diverging purple-orange map, the others inferno
    cmaps = [ax.images[0] for ax in fig.axes if ax.images]
    assert "map sum" in panels[0].get_title() and "per-pixel minima" in panels[0].get_title()
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(bars) == 4 and cmaps
    curves = plot_curves(expl)
    assert isinstance(curves, Figure) and len(curves.legends) == 1
    assert sum(1 for ax in curves.axes if ax.lines) == 1 + len(expl.words)  # MMSE, then one panel per word
    with pytest.raises(ParameterError, match="unknown map kind"):
        plot_maps(expl, kind="bogus")
    with pytest.raises(ParameterError, match="no attention maps"):
        plot_maps(synthetic_explanation(attention=False), kind="attention")


def test_no_pair_and_no_attention(tmp_path):
    e = synthetic_explanation(pair=None, attention=False, seed=None)
    path = save_explanation(e, tmp_path / "o")
    data = json.loads((path / "results.json").read_text())
    jsonschema.validate(data, results_schema())
    assert data["pid"] is None and data["cpid"] is None and data["attention"] is None and data["seed"] is None
    assert set(data["color_scales"]) == {"mi", "cmi"}
    assert sorted(p.name for p in (path / "maps").iterdir()) == sorted(
        [f"{k}_{w}.png" for k in ("mi", "cmi") for w in e.words] + ["colorbar_mi.png", "colorbar_cmi.png"])
    assert "given image" in (path / "report.html").read_text()


def test_a_precision_target_is_reported_met_or_not(expl):
    from diffpid.report.html_tables import precision_text

    rel = max(max(expl.cmi[w].stderr / expl.cmi[w].value, expl.mi[w].stderr / expl.mi[w].value) for w in expl.words)
    for target, met in ((1.01 * rel, True), (0.5 * rel, False)):
        params = dataclasses.replace(expl.parameters, precision=target, precision_floor=0.0, max_samples=100)
        e = dataclasses.replace(expl, parameters=params)
        data = explanation_to_dict(e)
        jsonschema.validate(data, results_schema())
        assert data["precision"]["target"] == target and data["precision"]["met"] is met
        assert data["parameters"]["max_samples"] == 100
        assert ("met" if met else "not met within the cap of 100 samples") in precision_text(e)
