"""DiffusersModel on tiny offline pipelines: timesteps, prediction types, batching, loading."""

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers.configuration_utils import FrozenDict

import diffpid
from diffpid.errors import ConditionError, ModelLoadError
from diffpid.models.diffusers import DiffusersModel
from diffpid.prompts import remove_words, token_span
from tiny_pipelines import (  # noqa: F401 - fixtures
    clip_tokenizer, pixel_path, sd_path, sd_scheduler, sd_v_path, sdxl_path, text_encoder,
)


@pytest.fixture(scope="module")
def sd(sd_path):
    return diffpid.load_model(sd_path)


@pytest.fixture(scope="module")
def sdxl(sdxl_path):
    return diffpid.load_model(sdxl_path)


@pytest.fixture(scope="module")
def pixel(pixel_path):
    return diffpid.load_model(pixel_path)


def reference_logsnr() -> torch.Tensor:
    """SD's scaled-linear schedule computed here, independently of diffusers."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return torch.log(ac / (1 - ac))


def test_logsnr_range_and_nearest_timestep(sd):
    ref = reference_logsnr()  # float64; diffusers keeps alphas_cumprod in float32
    assert sd.logsnr_range == pytest.approx((ref.min().item(), ref.max().item()), abs=1e-4)
    assert sd.logsnr_range == pytest.approx((-5.364, 7.069), abs=1e-3)  # SD 2.1-base, SCIENCE.md
    ac = sd.scheduler.alphas_cumprod.double()
    lam = torch.log(ac) - torch.log1p(-ac)
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    assert torch.equal(sd.timesteps(lam[t].float()), t)
    a = torch.empty(200, dtype=torch.float64).uniform_(-7, 9, generator=torch.Generator().manual_seed(0))
    brute = torch.tensor([int(np.argmin(np.abs(lam.numpy() - v))) for v in a.numpy()])
    assert torch.equal(sd.timesteps(a), brute)
    assert sd.timesteps(torch.tensor([-20.0, 20.0])).tolist() == [999, 0]


def test_epsilon_is_the_unet_on_x_a_unscaled(sd):
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    a = torch.tensor([-2.0, 3.0])
    cond = sd.encode_prompt("a red cat")
    t = sd.timesteps(a)
    emb = sd.pipeline.encode_prompt("a red cat", "cpu", 1, False)[0]
    with torch.no_grad():
        ref = sd.unet(x, t, encoder_hidden_states=emb.repeat(2, 1, 1)).sample
    torch.testing.assert_close(sd.eps(x, a, [cond])[:, 0], ref, rtol=1e-5, atol=1e-6)


class PerfectUNet(torch.nn.Module):
    """Returns the exact target of a known (x0, eps) pair: velocity, sample or epsilon."""

    def __init__(self, scheduler, x0, noise, kind):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = FrozenDict(sample_size=16, in_channels=3, addition_embed_type=None)
        self.s, self.x0, self.noise, self.kind = scheduler, x0, noise, kind

    @property
    def dtype(self):
        return self.w.dtype

    def forward(self, sample, timestep, encoder_hidden_states, return_dict=False):
        k = len(sample) // len(self.x0)
        x0, noise = self.x0.repeat_interleave(k, 0), self.noise.repeat_interleave(k, 0)
        if self.kind == "v_prediction":
            out = self.s.get_velocity(x0, noise, timestep)
        else:
            out = x0 if self.kind == "sample" else noise
        return (out,)


@pytest.mark.parametrize("kind", ["v_prediction", "sample", "epsilon"])
def test_prediction_types_convert_to_epsilon(kind):
    sched = sd_scheduler(kind)
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(3, 3, 16, 16, generator=g), torch.randn(3, 3, 16, 16, generator=g)
    t = torch.tensor([30, 400, 900])
    ac = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = sched.add_noise(x0, noise, t)  # the scheduler's own forward process
    a = torch.log(ac / (1 - ac)).reshape(-1)
    model = DiffusersModel(PerfectUNet(sched, x0, noise, kind), sched, [text_encoder()], [clip_tokenizer()])
    assert model.data_shape == (3, 16, 16) and model.vae is None
    conds = [model.encode_prompt("a cat"), model.unconditional()]
    out = model.eps(x_t, a, conds)
    assert out.shape == (3, 2, 3, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out, noise[:, None].expand_as(out), rtol=1e-4, atol=1e-4)


def test_v_prediction_pipeline_formula(sd_v_path):
    m = diffpid.load_model(sd_v_path)
    assert m.prediction_type == "v_prediction"
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([100, 700])
    ac = m.scheduler.alphas_cumprod[t].double()
    a = torch.log(ac / (1 - ac)).float()
    c = m.encode_prompt("a dog")
    v = m._unet(x, t, [c])[:, 0]
    ac4 = ac.float().reshape(-1, 1, 1, 1)
    expected = ac4.sqrt() * v + (1 - ac4).sqrt() * x  # DDIM's pred_epsilon for v_prediction
    torch.testing.assert_close(m.eps(x, a, [c])[:, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["sd", "sdxl", "pixel"])
def test_one_batched_call_equals_separate_calls(which, request):
    m = request.getfixturevalue(which)
    prompts = ["a red cat", "a dog on the table", ""]
    conds = [m.encode_prompt(p) for p in prompts]
    x = torch.randn(3, *m.data_shape, generator=torch.Generator().manual_seed(4))
    a = torch.tensor([-4.0, 0.5, 6.0])
    calls = []
    handle = m.unet.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        together = m.eps(x, a, conds)
    finally:
        handle.remove()
    assert calls == [9]
    for i in range(3):
        for j in range(3):
            alone = m.eps(x[i : i + 1], a[i : i + 1], [conds[j]])[0, 0]
            torch.testing.assert_close(together[i, j], alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[:, 0], together[:, 2])  # the conditions matter


def test_own_encoding_matches_the_pipeline(sd, sdxl):
    for m in (sd, sdxl):
        bare = DiffusersModel(m.unet, m.scheduler, m.text_encoders, m.tokenizers, vae=m.vae)
        for p in ["a red cat", ""]:
            ours, theirs = bare.encode_prompt(p), m.encode_prompt(p)
            torch.testing.assert_close(ours.embeddings, theirs.embeddings)
            if m is sdxl:
                assert theirs.embeddings.shape == (77, 64) and theirs.pooled.shape == (32,)
                torch.testing.assert_close(ours.pooled, theirs.pooled)
            else:
                assert theirs.pooled is None
    assert sd.encode_prompt("a cat") is sd.encode_prompt("a cat")  # cached
    assert sd.encode_prompt("").token_ids == sd.unconditional().token_ids == (570, 571)


def test_sdxl_time_ids_reach_the_unet(sdxl):
    assert sdxl.sdxl and sdxl.resolution == (32, 32)
    seen = {}

    def hook(mod, args, kwargs):
        seen.update(kwargs["added_cond_kwargs"])

    handle = sdxl.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        sdxl.eps(torch.zeros(2, 4, 16, 16), torch.zeros(2), [sdxl.encode_prompt("a cat")])
    finally:
        handle.remove()
    assert seen["time_ids"].tolist() == [[32, 32, 0, 0, 32, 32]] * 2
    assert seen["text_embeds"].shape == (2, 32)


def test_from_pipeline_keeps_dtype_device_and_reloads_nothing(sd_path, monkeypatch):
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    pipe = DiffusionPipeline.from_pretrained(sd_path, local_files_only=True).to(torch.bfloat16)

    def no_reload(*args, **kwargs):
        raise AssertionError("from_pipeline must not reload")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", no_reload)
    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained", no_reload)
    m = diffpid.from_pipeline(pipe)
    assert m.unet is pipe.unet and m.vae is pipe.vae and m.pipeline is pipe and m.scheduler is pipe.scheduler
    assert m.dtype == torch.bfloat16 and m.device == pipe._execution_device
    c = m.encode_prompt("a cat")
    assert c.embeddings.dtype == torch.bfloat16
    out = m.eps(torch.randn(2, 4, 16, 16), torch.tensor([0.0, 1.0]), [c, m.unconditional()])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert next(pipe.unet.parameters()).dtype == torch.bfloat16  # left as it was


def test_engine_end_to_end(sd):
    x = sd.encode_image(np.full((32, 32, 3), 120, np.uint8))
    assert x.shape == (1, 4, 16, 16)
    prompt = "a red cat on the table"
    mi = diffpid.mutual_information(sd, x[0], "cat", samples=16, seed=0)
    assert np.isfinite(mi.value) and mi.value > 0 and mi.pixel_map.shape == (16, 16)
    assert mi.pixel_map.sum() == pytest.approx(mi.value, rel=1e-4)
    cmi = diffpid.conditional_mutual_information(sd, x[0], prompt, word="cat", samples=16, seed=0)
    same = diffpid.mutual_information(sd, x[0], prompt, remove_words(prompt, ["cat"]), samples=16, seed=0)
    assert cmi.value == pytest.approx(same.value, rel=1e-6) and cmi.value > 0
    zero = diffpid.mutual_information(sd, x[0], prompt, prompt, samples=4, seed=0)
    assert zero.value == 0.0


def test_token_span_through_the_model(sd, pixel):
    prompt = "a red caterpillar on a cat"
    assert token_span(prompt, "caterpillar", sd) == tuple(range(3, 13))
    assert token_span(prompt, "caterpillar", sd.tokenizers[0]) == tuple(range(3, 13))  # a tokenizer works too
    assert token_span(prompt, "cat", sd) == (15,)
    assert token_span(prompt, "a", sd, occurrence=1) == (14,)
    assert token_span("A Red cat", "red", pixel) == (2,)


def test_prompt_errors(sd, pixel):
    with pytest.raises(ConditionError, match=r"has 92 tokens .* at most 77"):
        sd.encode_prompt("a red cat " * 30)
    with pytest.raises(ConditionError, match="outside the vocabulary of pixel: caterpillar"):
        pixel.encode_prompt("a red caterpillar")
    with pytest.raises(ConditionError, match="text prompts"):
        sd.encode_prompt(3)


def test_images(sd, pixel, tmp_path):
    from PIL import Image

    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    x = pixel.encode_image(tmp_path / "gray.png")
    assert x.shape == (1, 3, 16, 16)
    torch.testing.assert_close(x[0, 1], torch.from_numpy(gray / 127.5 - 1).float())
    assert torch.equal(x[0, 0], x[0, 2])
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:8, :, :] = (255, 0, 0, 255)  # opaque red top half, transparent bottom half
    y = pixel.encode_image(rgba)
    assert y[0, :, 0, 0].tolist() == [1.0, -1.0, -1.0] and y[0, :, 15, 0].tolist() == [1.0, 1.0, 1.0]
    assert np.array_equal(pixel.decode(y)[0], pixel.decode(pixel.encode_image(Image.fromarray(rgba, "RGBA")))[0])
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    assert np.array_equal(pixel.decode(pixel.encode_image(img))[0], img)  # exact round trip
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(pixel.encode_image(t), pixel.encode_image(img))
    big = sd.encode_image(np.zeros((48, 64, 3), np.uint8))  # resized to 32x32
    with torch.no_grad():
        ref = sd.vae.encode(-torch.ones(1, 3, 32, 32)).latent_dist.mean * sd.vae.config.scaling_factor
    torch.testing.assert_close(big, ref)
    g = torch.Generator().manual_seed(0)
    s1 = sd.encode_image(img, sample=True, generator=g)
    s2 = sd.encode_image(img, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2) and not torch.equal(s1, sd.encode_image(img))
    assert sd.encode_image([img, img]).shape == (2, 4, 16, 16)
    assert sd.decode(big).shape == (1, 32, 32, 3) and sd.decode(big).dtype == np.uint8
    (tmp_path / "bad.png").write_text("not an image")
    for bad in (tmp_path / "bad.png", tmp_path / "missing.png", np.zeros((4, 4, 2)), np.full((4, 4), 2.0), "x"):
        with pytest.raises(diffpid.errors.ImageError):
            pixel.encode_image(bad)


def test_generate(sd, pixel):
    for m in (sd, pixel):
        g1 = m.generate("a red cat", seed=3, steps=3, guidance_scale=3.0)
        g2 = m.generate("a red cat", seed=3, steps=3, guidance_scale=3.0)
        g3 = m.generate("a red cat", seed=4, steps=3, guidance_scale=3.0)
        assert g1.x.shape == (1, *m.data_shape) and g1.image.shape == (*m.resolution, 3)
        assert torch.equal(g1.x, g2.x) and not torch.equal(g1.x, g3.x)
        assert np.array_equal(g1.image, m.decode(g1.x)[0]) and (g1.seed, g1.prompt) == (3, "a red cat")


def test_generation_defaults_from_the_folder(pixel, pixel_path, tmp_path):
    # one step: ancestral DDPM and DDIM both return the x0 prediction from the same initial noise
    one_ddpm = pixel.generate("a red cat", seed=2, steps=1, guidance_scale=2.0, scheduler="ddpm")
    one_ddim = pixel.generate("a red cat", seed=2, steps=1, guidance_scale=2.0, scheduler="ddim")
    assert torch.allclose(one_ddpm.x, one_ddim.x, atol=1e-6)
    ddpm = pixel.generate("a red cat", seed=2, steps=4, guidance_scale=2.0, scheduler="ddpm")
    ddim = pixel.generate("a red cat", seed=2, steps=4, guidance_scale=2.0, scheduler="ddim")
    assert (ddpm.x - ddim.x).abs().max() > 1e-3  # ancestral noise enters after the first step
    assert pixel.generation == {"scheduler": "ddim", "steps": 50, "guidance_scale": 7.5}
    folder = tmp_path / "pixel"
    shutil.copytree(pixel_path, folder)
    (folder / "generation.json").write_text(json.dumps({"sampler": "ddpm", "steps": 4, "guidance_scale": 2.0}))
    m = diffpid.load_model(folder)
    assert m.generation == {"scheduler": "ddpm", "steps": 4, "guidance_scale": 2.0}  # an older file's "sampler" key
    assert torch.equal(m.generate("a red cat", seed=2).x, ddpm.x)
    for bad, msg in (({"sampler": "euler"}, "scheduler must be one of"), ({"steps": 0}, "steps must be"),
                     ({"cfg": 3}, "unknown keys"), ([1], "expected a JSON object")):
        (folder / "generation.json").write_text(json.dumps(bad))
        with pytest.raises(ModelLoadError, match=msg):
            diffpid.load_model(folder)
    (folder / "generation.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        diffpid.load_model(folder)
    with pytest.raises(diffpid.errors.ParameterError, match="scheduler must be one of"):
        pixel.generate("a red cat", scheduler="euler")
    shipped = diffpid.load_model(diffpid.shapes.model.default_model_path())
    assert shipped.generation == {"scheduler": "ddpm", "steps": 50, "guidance_scale": 3.0}


def test_generate_matches_the_pipeline(sd):
    g = sd.generate("a dog", seed=5, steps=2, guidance_scale=2.0)
    out = sd.pipeline("a dog", num_inference_steps=2, guidance_scale=2.0, height=32, width=32, output_type="np",
                      generator=torch.Generator().manual_seed(5)).images[0]
    assert np.abs(g.image.astype(int) - np.round(out * 255).astype(int)).max() <= 1


def test_load_errors(sd_path, tmp_path):
    with pytest.raises(ModelLoadError, match="check the path"):
        diffpid.load_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="check the path"):
        diffpid.load_model(tmp_path)  # a folder without model_index.json
    with pytest.raises(ModelLoadError, match="check the path"):
        diffpid.load_model("nobody/no-such-model")  # offline hub id
    (tmp_path / "sana").mkdir()
    (tmp_path / "sana" / "model_index.json").write_text(json.dumps(
        {"_class_name": "SanaPipeline", "transformer": ["diffusers", "SanaTransformer2DModel"],
         "vae": ["diffusers", "AutoencoderDC"]}))
    with pytest.raises(ModelLoadError, match="supported: StableDiffusionPipeline, StableDiffusionXLPipeline, "
                                             "StableDiffusion3Pipeline, FluxPipeline"):
        diffpid.load_model(tmp_path / "sana")
    (tmp_path / "flux").mkdir()  # a supported class whose folder is incomplete
    (tmp_path / "flux" / "model_index.json").write_text(json.dumps(
        {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"],
         "vae": ["diffusers", "AutoencoderKL"]}))
    with pytest.raises(ModelLoadError, match="cannot load the pipeline"):
        diffpid.load_model(tmp_path / "flux")
    broken = tmp_path / "broken"
    shutil.copytree(sd_path, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelLoadError):
        diffpid.load_model(broken)


def test_dtype_and_other_families(sdxl, sd_v_path, pixel_path):
    low = diffpid.load_model(pixel_path, torch_dtype=torch.bfloat16)
    assert low.dtype == torch.bfloat16 and low.text_encoders[0].dtype == torch.bfloat16
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    full = diffpid.load_model(pixel_path)
    c_low, c_full = low.encode_prompt("a red cat"), full.encode_prompt("a red cat")
    e_low = low.eps(x, torch.tensor([1.0]), [c_low])
    e_full = full.eps(x, torch.tensor([1.0]), [c_full])
    assert e_low.dtype == torch.float32
    assert (e_low - e_full).norm() / e_full.norm() < 0.05  # bf16 rounding only
    g = sdxl.generate("a cat", seed=0, steps=2, guidance_scale=2.0)
    assert g.x.shape == (1, 4, 16, 16) and g.image.shape == (32, 32, 3)
    v = diffpid.load_model(sd_v_path)
    mi = diffpid.conditional_mutual_information(v, v.encode_image(g.image)[0], "a red cat", word="red", samples=8)
    assert np.isfinite(mi.value) and mi.value > 0 and np.isfinite(mi.standard_value)
