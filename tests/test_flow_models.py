"""The flow-matching backend on tiny offline SD3, Flux.1 (dev and schnell) and Flux.2 pipelines.

The pipelines are built from configs with locally built tokenizers (tests/tiny_flow.py),
saved and reloaded offline. The central checks: the backend's epsilon, taken back to a
velocity and stepped with Euler, is the pipeline's own denoising step (its transformer
call, timestep convention, packing and guidance embedding included); packing round-trips;
VAE normalisation is the pipeline's; everything above the model line runs unchanged.
"""

import json

import numpy as np
import pytest
import torch

import diffpid
from diffpid.errors import ConditionError, ModelLoadError, ParameterError
from diffpid.models.flow import flow_input, logsnr_of_time
from diffpid.models.flow_families import FLOW_PIPELINES, QwenImageModel, SD3Model
from diffpid.models.flow_flux import ChromaModel, Flux2KleinModel, Flux2Model, FluxModel
from diffpid.models.flow_pipeline import check_flow_generation, pack_2x2, unpack_2x2
from diffpid.models.loading import from_pipeline, load_model
from diffpid.prompts import token_span
from diffpid.sampling import ddim_step
from tiny_flow import FAMILIES, flow_folder, flow_pipeline, velocity_from_eps
from tiny_pipelines import sd_path  # noqa: F401 - fixture

CLASSES = {"sd3": SD3Model, "flux-dev": FluxModel, "flux-schnell": FluxModel, "flux2": Flux2Model,
           "flux2-klein": Flux2KleinModel, "chroma": ChromaModel, "qwenimage": QwenImageModel}
PROMPT = "a red cat on the table"


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def models():
    return {f: load_model(flow_folder(f)) for f in FAMILIES}


def _pipe_latents(model, x):
    """Data ``(1, *data_shape)`` in the layout the pipeline's ``latents`` argument takes."""
    if isinstance(model, Flux2Model):
        return flux2_patchify(x)  # Flux.2 takes patchified latents and packs them itself
    return x if isinstance(model, SD3Model) else pack_2x2(x)


def _from_pipe(model, latents):
    if isinstance(model, Flux2KleinModel) and latents.dim() == 4:  # klein's output: the VAE latent
        return model._latent_to_data(latents)
    return latents if isinstance(model, SD3Model) else unpack_2x2(latents, *model.data_shape[1:])


def test_saved_pipelines_reload_offline_with_their_backend(models, family):
    m = models[family]
    assert type(m) is CLASSES[family] and type(m.pipeline).__name__ in FLOW_PIPELINES
    assert m.data_shape == (4, 16, 16) and m.resolution == (32, 32)
    assert m.generation["steps"] == 2  # from the folder's generation.json
    assert m.dtype == torch.float32 and m.device == torch.device("cpu")
    # flow times down to the scheduler's smallest training sigma, symmetric in log-SNR
    t_min = 3e-3 / (1 + 2e-3) if family == "sd3" else 1e-3
    assert m.logsnr_range[1] == pytest.approx(2 * np.log((1 - t_min) / t_min), rel=1e-6)
    assert m.logsnr_range[0] == -m.logsnr_range[1]
    assert m.guidance == {"sd3": None, "flux-dev": 3.5, "flux-schnell": None, "flux2": 4.0, "flux2-klein": None,
                         "chroma": None, "qwenimage": None}[family]
    ident = m.identity()
    extra = dict(ident.extra)
    assert ident.family == "flow" and ident.backend == type(m).__name__ and ident.dtype == "float32"
    assert extra["guidance"] == m.guidance and extra["pipeline"] == type(m.pipeline).__name__
    assert dict(ident.generation)["steps"] == 2
    assert {"text", "images", "generate"} <= m.capabilities


def test_attention_adapter_or_a_one_line_capability_error(models, family):
    from diffpid.models.base import CapabilityError

    m = models[family]
    if "attention" in m.capabilities:
        from diffpid.attention.joint import JointAttentionAdapter

        adapter = m.attention_adapter()
        assert isinstance(adapter, JointAttentionAdapter) and adapter.layers()
    else:
        with pytest.raises(CapabilityError) as err:
            m.attention_adapter()
        assert "\n" not in str(err.value) and "attention=False" in str(err.value)


def test_one_euler_step_from_our_epsilon_is_the_pipelines_step(models, family):
    m = models[family]
    pipe = m.pipeline
    x0 = torch.randn(1, *m.data_shape, generator=torch.Generator().manual_seed(3))
    seen = {}

    def grab(p, i, t, kw):
        seen[i] = kw["latents"].clone()
        return {}

    extra = {"text_encoder_out_layers": m.text_layers} if family.startswith("flux2") else {}
    guidance = m.guidance if m.guidance is not None else 1.0  # SD3 at 1: no classifier-free guidance
    pipe(prompt=PROMPT, num_inference_steps=3, guidance_scale=guidance, latents=_pipe_latents(m, x0), height=32,
         width=32, output_type="latent", callback_on_step_end=grab, max_sequence_length=m.max_sequence_length, **extra)
    sig = pipe.scheduler.sigmas.double()  # after the call: the shifted sigmas it used
    t0, t1 = sig[1], sig[2]  # step 0 starts at sigma 1 (pure noise, log-SNR -inf): check step 1
    x_t, expect = _from_pipe(m, seen[0]), _from_pipe(m, seen[1])
    a = logsnr_of_time(t0).reshape(1).float()
    x_a = x_t * torch.sigmoid(a).sqrt() / (1 - t0).float()  # the VP point with the same SNR
    assert torch.allclose(flow_input(x_a, a), x_t, atol=1e-6)
    eps = m.eps(x_a, a, [m.encode_prompt(PROMPT)])[:, 0]
    v = velocity_from_eps(x_t, t0.reshape(1).float(), eps)
    ours = x_t + float(t1 - t0) * v
    assert torch.allclose(ours, expect, atol=2e-5, rtol=1e-4), (ours - expect).abs().max()
    # the same step as deterministic DDIM in log-SNR (what the engine's samplers do), rescaled
    a1 = float(logsnr_of_time(t1))
    x1_a = ddim_step(x_a.double(), eps.double(), float(a), a1).float()
    assert torch.allclose(flow_input(x1_a, torch.tensor([a1])), expect, atol=2e-5, rtol=1e-4)


def test_euler_step_equals_the_scheduler_step(models):
    from diffusers import FlowMatchEulerDiscreteScheduler

    m = models["flux-dev"]
    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(sigmas=[0.7, 0.4], mu=0.0, device="cpu")  # mu = 0 leaves the sigmas unshifted
    sigma, nxt = sched.sigmas[0].double(), sched.sigmas[1].double()
    x_t = torch.randn(2, *m.data_shape, generator=torch.Generator().manual_seed(0))
    a = logsnr_of_time(sigma).repeat(2).float()
    x_a = x_t * torch.sigmoid(a[0]).sqrt() / (1 - sigma).float()
    eps = m.eps(x_a, a, [m.encode_prompt("a cat")])[:, 0]
    v = velocity_from_eps(x_t, sigma.repeat(2).float(), eps)
    step = sched.step(pack_2x2(v), sched.timesteps[0], pack_2x2(x_t)).prev_sample
    assert torch.allclose(unpack_2x2(step, 16, 16), x_t + float(nxt - sigma) * v, atol=1e-6)


def test_packing_round_trips_and_matches_the_pipelines():
    from diffusers import Flux2Pipeline, FluxPipeline

    x = torch.randn(3, 16, 8, 12)
    tokens = pack_2x2(x)
    assert tokens.shape == (3, 4 * 6, 64)
    assert torch.equal(unpack_2x2(tokens, 8, 12), x)
    assert torch.equal(tokens, FluxPipeline._pack_latents(x, 3, 16, 8, 12))
    assert torch.equal(FluxPipeline._unpack_latents(tokens, 8 * 8, 12 * 8, 8), x)  # pixel sizes, VAE factor 8
    assert torch.equal(tokens, Flux2Pipeline._pack_latents(Flux2Pipeline._patchify_latents(x)))


def test_vae_normalisation_is_the_pipelines(models, family):
    m = models[family]
    img = (np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251).astype(np.uint8)
    x = m.encode_image(img)
    assert x.shape == (1, *m.data_shape)
    pixels = m.pipeline.image_processor.preprocess(img[None].astype(np.float32) / 255, height=32, width=32)
    vae = m.pipeline.vae
    with torch.no_grad():
        if family.startswith("flux2"):  # patchified, batch-normalised (the pipeline's own image path)
            want = m.pipeline._encode_vae_image(pixels, torch.Generator().manual_seed(0))
            got = flux2_patchify(x)
        elif family == "qwenimage":  # one-frame video latent, per-channel statistics
            z = vae.encode(pixels[:, :, None]).latent_dist.mean[:, :, 0]
            mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1)
            std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1)
            want, got = (z - mean) / std, x
        else:
            z = vae.encode(pixels).latent_dist.mean
            want, got = (z - vae.config.shift_factor) * vae.config.scaling_factor, x
        assert torch.allclose(got, want, atol=1e-5)
        assert abs(vae.config.get("shift_factor") or 0.0) > 0 or family.startswith("flux2") or family == "qwenimage"
        out = m.decode(x)
        assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8


def flux2_patchify(x):
    from diffusers import Flux2Pipeline

    return Flux2Pipeline._patchify_latents(x)


def test_generation_is_the_pipelines_and_seeded(models, family):
    m = models[family]
    g0, g1 = m.generate(PROMPT, seed=0), m.generate(PROMPT, seed=1)
    assert torch.equal(g0.x, m.generate(PROMPT, seed=0).x) and not torch.equal(g0.x, g1.x)
    assert g0.x.shape == (1, *m.data_shape) and g0.image.shape == (32, 32, 3)
    extra = {"text_encoder_out_layers": m.text_layers} if family.startswith("flux2") else {}
    cfg = {"guidance_scale": m.generation["guidance_scale"]}
    if family == "qwenimage":  # its classifier-free guidance is true_cfg_scale against a negative prompt
        cfg = {"true_cfg_scale": m.generation["guidance_scale"], "negative_prompt": " "}
    lat = m.pipeline(prompt=PROMPT, num_inference_steps=2, **cfg,
                     generator=torch.Generator().manual_seed(0), height=32, width=32, output_type="latent",
                     max_sequence_length=m.max_sequence_length, **extra).images
    assert torch.equal(_from_pipe(m, lat), g0.x)


def test_distilled_guidance_is_an_input_of_every_condition(models):
    m = models["flux-dev"]
    x = torch.randn(2, *m.data_shape, generator=torch.Generator().manual_seed(0))
    a = torch.tensor([-1.0, 2.0])
    conds = [m.unconditional(), m.encode_prompt("a red cat")]
    base = m.eps(x, a, conds)
    m.guidance = 7.0
    try:
        moved = m.eps(x, a, conds)
    finally:
        m.guidance = 3.5
    assert not torch.allclose(base[:, 0], moved[:, 0])  # the empty prompt too sees the guidance value
    assert torch.equal(m.eps(x, a, conds), base)
    assert models["flux-schnell"].guidance is None


def test_word_spans_come_from_the_tokenizer_that_carries_the_words(models):
    sd3, flux, flux2 = models["sd3"], models["flux-dev"], models["flux2"]
    assert token_span(PROMPT, "cat", flux) == (2,)  # T5: no BOS, "▁cat" is the third token
    assert flux.token_span(PROMPT, "cat") == (2,) and flux.token_spans(PROMPT, ["red", "table"]) == ((1,), (5,))
    assert token_span(PROMPT, "table", flux) == (5,)
    # SD3: the CLIP position (BOS at 0) and the T5 position after the 77 CLIP positions
    assert token_span(PROMPT, "cat", sd3) == (3, 77 + 2)
    span = token_span(PROMPT, "cat", flux2)  # inside the chat template, after the system message
    ids = flux2._tokenizer().apply_chat_template(
        [[{"role": "system", "content": [{"type": "text", "text": flux2.pipeline.system_message}]},
          {"role": "user", "content": [{"type": "text", "text": PROMPT}]}]], tokenize=True, return_dict=True)
    toks = flux2._tokenizer().convert_ids_to_tokens(ids["input_ids"][0])
    assert len(span) == 1 and toks[span[0]] == "cat" and toks[span[0] - 1] == "red" and span[0] > 20
    with pytest.raises(ConditionError, match="'bird' is not a word of the prompt"):
        token_span(PROMPT, "bird", flux)


def test_over_long_prompts_name_the_limit(models, family):
    m = models[family]
    long = " ".join(["a red cat"] * 30)
    with pytest.raises(ConditionError) as err:
        m.encode_prompt(long)
    msg = str(err.value)
    assert "reads at most" in msg and "\n" not in msg
    limit = {"sd3": "77", "flux-dev": "77", "flux-schnell": "77", "flux2": "64", "flux2-klein": "32",
             "chroma": "32", "qwenimage": "64"}[family]
    assert f"at most {limit}" in msg
    with pytest.raises(ConditionError, match="text prompts"):
        m.encode_prompt({"y": 1})


def test_information_pid_and_explain_run_unchanged(models):
    m = models["flux-dev"]
    x = m.generate(PROMPT, seed=0).x
    r = diffpid.mutual_information(m, x[0], "cat", samples=4, seed=0)
    assert r.pixel_map.shape == (16, 16)  # the unpacked latent grid
    assert r.pixel_map.sum() == pytest.approx(r.value, rel=1e-4, abs=1e-6)
    c = diffpid.conditional_mutual_information(m, x[0], PROMPT, word="red", samples=4, seed=0)
    assert np.isfinite(c.value) and c.pixel_map.sum() == pytest.approx(c.value, rel=1e-4, abs=1e-6)
    p = diffpid.pid(m, x[0], "red", "cat", prompt=PROMPT, samples=4, seed=0)
    assert all(np.isfinite(a.value) for a in p.atoms) and p.synergy.pixel_map.shape == (16, 16)
    from diffpid import explain

    e = explain(PROMPT, model=m, samples=4, seed=0)
    assert e.words == ("red", "cat", "table") and e.pair is not None
    if "attention" in m.capabilities:  # joint-attention maps from the same denoiser calls
        assert set(e.attention) == set(e.words) and all(np.isfinite(v).all() for v in e.attention.values())
    assert e.mi["cat"].pixel_map.shape == (16, 16) and e.image.shape == (32, 32, 3)
    with pytest.raises(ConditionError, match="'dog' is not a word of the prompt"):
        explain(PROMPT, model=m, words=["dog"], samples=2)


@pytest.mark.parametrize("family", ["sd3", "flux2", "flux2-klein", "chroma", "qwenimage"])
def test_explain_on_the_other_families(models, family):
    from diffpid import explain

    e = explain("a red cat", model=models[family], samples=2, seed=0)
    assert e.words == ("red", "cat") and np.isfinite(e.cmi["cat"].value)


def test_from_pipeline_keeps_dtype_and_device_and_chooses_by_class(sd_path):  # noqa: F811
    pipe = flow_pipeline("flux-dev").to(torch.bfloat16)
    m = from_pipeline(pipe)
    assert isinstance(m, FluxModel) and m.pipeline is pipe and m.dtype == torch.bfloat16
    from diffusers import FluxPipeline

    class MyFlux(FluxPipeline):  # a user's subclass is served as the pipeline it extends
        pass

    assert type(from_pipeline(MyFlux(**pipe.components))) is FluxModel
    assert m.device == torch.device("cpu") and pipe.transformer.dtype == torch.bfloat16
    e = m.eps(torch.randn(1, *m.data_shape), torch.tensor([0.5]), [m.encode_prompt("a cat")])
    assert e.dtype == torch.float32 and m.encode_prompt("a cat").embeddings.dtype == torch.bfloat16
    from diffpid.models.diffusers import DiffusersModel

    sd = load_model(sd_path).pipeline
    assert isinstance(from_pipeline(sd), DiffusersModel)
    with pytest.raises(ParameterError, match="only apply to flow-matching pipelines"):
        from_pipeline(sd, guidance=3.0)


def test_unsupported_pipelines_get_one_line_naming_the_supported(tmp_path):
    class SanaPipeline:  # a pipeline class diffpid does not run
        config = {}

    with pytest.raises(ModelLoadError) as err:
        from_pipeline(SanaPipeline())
    msg = str(err.value)
    assert "SanaPipeline" in msg and "\n" not in msg
    for name in ("StableDiffusionPipeline", "StableDiffusion3Pipeline", "FluxPipeline", "Flux2Pipeline"):
        assert name in msg
    folder = tmp_path / "sana"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "SanaPipeline",
                                                         "transformer": ["diffusers", "SanaTransformer2DModel"]}))
    with pytest.raises(ModelLoadError, match="FluxPipeline") as err:
        load_model(folder)
    assert "\n" not in str(err.value)


def test_generation_json_is_validated():
    assert check_flow_generation({"resolution": 64, "steps": 3}) == {"resolution": (64, 64), "steps": 3}
    for bad in ({"sampler": "ddim"}, {"steps": 0}, {"resolution": [32]}, {"guidance_scale": -1}):
        with pytest.raises(ModelLoadError):
            check_flow_generation(bad, "x/generation.json")


def test_cpid_and_dataset_runs_run_unchanged(models, tmp_path):
    from PIL import Image

    from diffpid.runs.words import run_words

    m = models["flux-schnell"]
    x = m.generate(PROMPT, seed=0).x
    c = diffpid.pid(m, x[0], "red", "cat", prompt=PROMPT, conditional=True, samples=4, seed=0)
    assert all(np.isfinite(a.value) for a in c.atoms) and c.redundancy.pixel_map.shape == (16, 16)
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "in.png")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in [
        {"id": "gen", "prompt": "a red cat", "words": ["cat"]},
        {"id": "img", "image": "in.png", "prompt": "a blue car", "words": ["blue", "car"]}]) + "\n")
    s = run_words(items, tmp_path / "out", model=flow_folder("flux-schnell"), samples=2, steps=1, device="cpu",
                  progress=False)
    assert s.done == 2 and not s.failed


def test_one_batched_call_equals_one_call_per_condition(models, family):
    m = models[family]
    x = torch.randn(2, *m.data_shape, generator=torch.Generator().manual_seed(5))
    a = torch.tensor([-2.0, 3.0])
    conds = [m.encode_prompt(p) for p in ("", "a red cat", PROMPT)]
    joint = m.eps(x, a, conds)  # rows input-major: row i*k + j = input i under condition j
    for j, c in enumerate(conds):
        assert torch.allclose(joint[:, j], m.eps(x, a, [c])[:, 0], atol=1e-5)
    assert torch.allclose(joint[1], m.eps(x[1:], a[1:], conds)[0], atol=1e-5)
