"""The report: files, results.json against the Explanation and its schema, maps.npz, shared colour
scales, overlays, HTML hooks and escaping, atomic writes, and the plotting helpers.

Rendering tests use Explanations with known arrays (tests/report_fixtures.py); the CLI and an
end-to-end run through ``diffpid.explain`` on a tiny pixel-space model are in test_report_cli.py.
"""

from __future__ import annotations

import base64
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
from diffpid.report.maps import bilinear, display_size, overlay, scale_of, slugify, unique_slugs
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
                                  "attention": True}
    assert data["versions"]["torch"] == "2.13.0+cpu"
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


def test_colour_scales_are_shared_per_group(saved, expl):
    top = RAMP.max()
    scales = {s.group: s for s in color_scales(report_maps(expl))}
    assert (scales["mi"].vmin, scales["mi"].vmax) == (0.0, pytest.approx(3 * top))  # the largest of the three MI maps
    assert (scales["cmi"].vmin, scales["cmi"].vmax) == (0.0, pytest.approx(1.5 * top))
    assert scales["pid"].diverging and scales["pid"].vmax == pytest.approx(3 * top) and scales["pid"].vmin == -scales["pid"].vmax
    assert scales["cpid"].vmax == pytest.approx(0.3 * top)
    assert scales["attention"].vmax == pytest.approx(max(a.max() for a in expl.attention.values()))
    data = json.loads((saved / "results.json").read_text())
    tags = parse((saved / "report.html").read_text())
    for group, s in scales.items():
        assert data["color_scales"][group]["vmin"] == s.vmin and data["color_scales"][group]["vmax"] == s.vmax
        imgs = tags.find("img", **{"class": "map", "data_kind": group})
        assert len(imgs) == (4 if group in ("pid", "cpid") else 3)
        assert {(float(i["data-vmin"]), float(i["data-vmax"])) for i in imgs} == {(s.vmin, s.vmax)}
        bar = tags.find("img", **{"class": "colorbar", "data_scale": group})
        assert len(bar) == 1 and float(bar[0]["data-vmax"]) == s.vmax


def test_overlay_colours_follow_the_shared_scale(expl):
    from matplotlib import colormaps

    maps = report_maps(expl)
    scale = scale_of(color_scales(maps), "mi")
    red = overlay(expl.image, expl.mi["red"].pixel_map, scale)
    table = overlay(expl.image, expl.mi["table"].pixel_map, scale)
    # the bottom-right map pixel of "table" holds the scale maximum: full opacity of the top colour
    # (the map is bilinearly upsampled; at the last display pixel it equals the corner value)
    top = np.asarray(colormaps["inferno"](1.0)[:3])
    base = expl.image[-1, -1] / 255.0
    want = np.round((base * 0.15 + top * 0.85) * 255)
    assert np.abs(table[-1, -1].astype(float) - want).max() <= 1
    # "red" is a third of "table": at the same pixel, a third of the scale, not its top
    v = expl.mi["red"].pixel_map[-1, -1] / scale.vmax
    a = 0.25 + 0.6 * v
    want_red = np.round((base * (1 - a) + np.asarray(colormaps["inferno"](v)[:3]) * a) * 255)
    assert np.abs(red[-1, -1].astype(float) - want_red).max() <= 1


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
    assert "<script" not in html and "http://" not in html and "https://" not in html
    tags = parse(html)
    for t, a in tags.tags:
        for attr in ("src", "href"):
            assert attr not in a or a[attr].startswith("data:"), (t, a)
    image = tags.find("img", id="image")
    assert len(image) == 1 and png_of_uri(image[0]["src"]).size == (256, 256)
    maps = tags.find("img", **{"class": "map"})
    assert len(maps) == 3 * 3 + 2 * 4
    for m in maps:
        assert png_of_uri(m["src"]).size == (256, 256)
    assert {m["data-word"] for m in tags.find("img", **{"class": "map", "data_kind": "cmi"})} == set(expl.words)
    assert {m["data-atom"] for m in tags.find("img", **{"class": "map", "data_kind": "pid"})} == {
        "redundancy", "unique_1", "unique_2", "synergy"}
    rows = tags.find("tr", **{"class": "word-row"})
    assert [r["data-word"] for r in rows] == list(expl.words)
    cells = [a for t, a in tags.tags if t == "td" and a.get("data-quantity") == "cmi"]
    assert [float(c["data-value"]) for c in cells] == [expl.cmi[w].value for w in expl.words]
    assert [float(c["data-stderr"]) for c in cells] == [expl.cmi[w].stderr for w in expl.words]
    pid_cells = [a for t, a in tags.tags if t == "td" and a.get("data-quantity") == "synergy"]
    assert [float(c["data-value"]) for c in pid_cells] == [expl.pid.synergy.value, expl.cpid.synergy.value]
    assert len(tags.find("table", id="parameters")) == 1 and len(tags.find("table", id="versions")) == 1
    assert png_of_uri(tags.find("img", id="curves")[0]["src"]).size[0] > 300


def test_html_escapes_user_text():
    prompt = 'a <script>alert("x")</script> red & cat'
    e = synthetic_explanation(prompt=prompt, words=("red", "cat", "<b>x"), pair=None, attention=False)
    html = render_html(e)
    assert "<script>" not in html and "<b>x" not in html
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
    assert len(panels) == 4 and len(fig.axes) == 4 + 1  # four atoms and one shared colour bar
    assert {tuple(ax.images[0].get_array().shape[:2]) for ax in panels} == {(256, 256)}
    assert isinstance(plot_curves(expl), Figure) and len(plot_curves(expl).axes) == 2
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
