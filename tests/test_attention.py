"""Cross-attention capture (DAAM): exactness, forced attention, row layouts, aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_pipelines import clip_tokenizer, tiny_unet

from diffpid.attention import AttentionCapture, attention_probabilities, cross_attention_layers
from diffpid.attention.maps import word_tokens
from diffpid.errors import ConditionError, ParameterError, ShapeError

PROMPT = "cat dog"  # tokens: BOS 0, cat 1, dog 2, EOS 3, padding
FIRST = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def _forced_unet():
    """A tiny UNet whose first cross-attention layer sees queries +z (left half) or -z (right half).

    conv_in copies input channel 0, the first ResNet and self-attention add nothing, the
    group norm and proj_in keep the sign of channel 0, and LayerNorm maps (c, 0, .., 0)
    to sign(c) * z. With text embeddings +alpha*[z, 0] for token 1 and -alpha*[z, 0] for
    token 2 (zero elsewhere) and key = first 8 embedding dims, token 1 takes the left
    half's attention and token 2 the right half's.
    """
    u = tiny_unet()
    with torch.no_grad():
        u.conv_in.weight.zero_()
        u.conv_in.bias.zero_()
        u.conv_in.weight[0, 0, 1, 1] = 1.0
        res = u.down_blocks[0].resnets[0]
        res.conv2.weight.zero_()
        res.conv2.bias.zero_()
        tr = u.down_blocks[0].attentions[0]
        tr.proj_in.weight.copy_(torch.eye(8).reshape(8, 8, 1, 1))
        tr.proj_in.bias.zero_()
        blk = tr.transformer_blocks[0]
        blk.attn1.to_out[0].weight.zero_()
        blk.attn1.to_out[0].bias.zero_()
        blk.attn2.to_q.weight.copy_(torch.eye(8))
        k = torch.zeros(8, 32)
        k[:, :8] = torch.eye(8)
        blk.attn2.to_k.weight.copy_(k)
    z = F.layer_norm(torch.eye(8)[0], (8,))
    return u, z


def _embedding(z: torch.Tensor, sign: float, alpha: float = 200.0) -> torch.Tensor:
    e = torch.zeros(77, 32)
    e[1, :8] = sign * alpha * z
    e[2, :8] = -sign * alpha * z
    return e


def _left_right(b: int = 1) -> torch.Tensor:
    x = torch.zeros(b, 4, 16, 16)
    x[:, 0, :, :8] = 1.0
    x[:, 0, :, 8:] = -1.0
    return x


def _run(u, x, emb, t=10):
    with torch.no_grad():
        return u(x, torch.full((len(x),), t), emb).sample


def test_output_bitwise_identical_and_processors_restored(unet):
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 77, 32, generator=g)
    before = dict(unet.attn_processors)
    ref = _run(unet, x, e)
    with AttentionCapture(unet, ["a", "b"], layout=["a", None, "b"], per_layer=True, per_head=True) as cap:
        out = _run(unet, x, e)
        wrapped = dict(unet.attn_processors)
    assert torch.equal(ref, out)
    assert cap.steps("a") == 1 and cap.steps("b") == 1
    assert all(type(wrapped[n + ".processor"]).__name__.startswith("Recording") for n in cap.layers)
    after = dict(unet.attn_processors)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert not unet._forward_pre_hooks and not unet._forward_hooks


def test_restored_after_errors(unet):
    before = dict(unet.attn_processors)
    with pytest.raises(RuntimeError, match="boom"):
        with AttentionCapture(unet, "a"):
            _run(unet, torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32))
            raise RuntimeError("boom")
    assert all(unet.attn_processors[k] is before[k] for k in before)
    # an error raised inside the UNet call (two different prompts in the batch, no layout)
    with pytest.raises(ConditionError, match="layout"):
        with AttentionCapture(unet, "a"):
            _run(unet, torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32))
    assert all(unet.attn_processors[k] is before[k] for k in before)
    assert not unet._forward_pre_hooks and not unet._forward_hooks
    with pytest.raises(ShapeError):
        with AttentionCapture(unet, "a", layout=["a", "b", None]):
            _run(unet, torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32))
    assert all(unet.attn_processors[k] is before[k] for k in before)


def test_probabilities_sum_to_one_and_reproduce_the_layer_output(unet):
    g = torch.Generator().manual_seed(1)
    attn = unet.get_submodule(FIRST)
    hs, ehs = torch.randn(2, 256, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        p = attention_probabilities(attn, hs, ehs)  # (2, heads, 256, 77)
        assert p.shape == (2, attn.heads, 256, 77)
        assert torch.allclose(p.sum(-1), torch.ones(2, attn.heads, 256), atol=1e-6)
        v = attn.to_v(ehs).view(2, 77, attn.heads, -1).transpose(1, 2)
        mixed = (p @ v).transpose(1, 2).reshape(2, 256, -1)
        out = attn.to_out[0](mixed)
        assert torch.allclose(out, attn(hs, encoder_hidden_states=ehs), atol=1e-5)
    # through the capture, at a layer's own resolution: the token maps sum to 1 at every pixel
    with AttentionCapture(unet, "p", layers=[FIRST]) as cap:
        _run(unet, torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 32, generator=g))
    assert torch.allclose(cap.token_maps().sum(0), torch.ones(16, 16), atol=1e-5)


def test_processor_keyword_arguments_pass_through():
    from diffusers.models.attention_processor import AttnProcessor2_0

    class Gain(AttnProcessor2_0):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, gain=1.0):
            return gain * super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    u = tiny_unet()
    u.set_attn_processor(Gain())
    x, e = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32)
    with torch.no_grad():
        plain = u(x, 5, e).sample
        ref = u(x, 5, e, cross_attention_kwargs={"gain": 2.0}).sample
        with AttentionCapture(u, "p") as cap:
            out = u(x, 5, e, cross_attention_kwargs={"gain": 2.0}).sample
    assert not torch.allclose(plain, ref)
    assert torch.equal(ref, out) and cap.steps() == 1


def test_forced_attention_lights_the_right_half():
    u, z = _forced_unet()
    tok = clip_tokenizer()
    assert word_tokens(PROMPT, "cat", tok) == (1,) and word_tokens(PROMPT, "dog", tok) == (2,)
    for resolution in (None, (32, 32)):
        with AttentionCapture(u, PROMPT, tokenizer=tok, layers=[FIRST], resolution=resolution) as cap:
            _run(u, _left_right(), _embedding(z, 1.0)[None])
        m = cap.maps(["cat", "dog"])
        w = m.maps.shape[-1] // 2
        cat, dog = m["cat"], m["dog"]
        assert cat[:, : w - 1].min() > 0.95 and cat[:, w + 1 :].max() < 0.05
        assert dog[:, w + 1 :].min() > 0.95 and dog[:, : w - 1].max() < 0.05
        assert m.tokens == ((1,), (2,)) and m.steps == 1
        assert m.maps.min() >= 0  # bicubic undershoot at the sharp edge is clamped


@pytest.mark.parametrize("order", ["uncond_cond", "cond_uncond", "no_guidance", "embeddings"])
def test_guidance_and_batch_layouts_give_the_right_prompt(order):
    """The unconditional rows carry swapped embeddings: mixing rows up would flip the maps."""
    u, z = _forced_unet()
    cond, uncond = _embedding(z, 1.0), _embedding(z, -1.0)
    kw: dict = {"layers": [FIRST], "tokenizer": clip_tokenizer()}
    if order == "uncond_cond":
        rows, kw["layout"] = [uncond, cond], ["", PROMPT]
    elif order == "cond_uncond":
        rows, kw["layout"] = [cond, uncond], [PROMPT, ""]
    elif order == "no_guidance":
        rows = [cond]
    else:
        rows, kw["embeddings"] = [cond, uncond, uncond, cond], [cond, uncond]
    prompts = [PROMPT] if order == "no_guidance" else [PROMPT, ""]
    emb = torch.stack(rows)
    with AttentionCapture(u, prompts, **kw) as cap:
        _run(u, _left_right(len(rows)), emb)
    images = 2 if order == "embeddings" else 1
    for i in range(images):
        cat = cap.maps(["cat"], PROMPT, image=i)["cat"]
        assert cat[:, :7].min() > 0.95 and cat[:, 9:].max() < 0.05
    if order != "no_guidance":
        t1 = cap.maps([(1,)], "").maps[0]  # token 1 of the unconditional rows looks right
        assert t1[:, 9:].min() > 0.95 and t1[:, :7].max() < 0.05


def _reference_maps(u, x, emb, ts, row, grid=(16, 16)):
    """Store every probability map (independent softmax), then average as DAAM: (steps, T, H, W)."""
    store: list = []

    def hook(mod, args, kwargs, out):
        hs, ehs = args[0][row : row + 1], kwargs["encoder_hidden_states"][row : row + 1]
        hd = mod.heads
        q = mod.to_q(hs).view(1, -1, hd, mod.to_q.out_features // hd).transpose(1, 2)
        k = mod.to_k(ehs).view(1, -1, hd, mod.to_k.out_features // hd).transpose(1, 2)
        store.append(torch.softmax(q @ k.transpose(-1, -2) * mod.scale, -1)[0])  # (heads, n, T)

    mods = [u.get_submodule(n) for n in cross_attention_layers(u)]
    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in mods]
    steps = []
    try:
        for t in ts:
            store.clear()
            _run(u, x, emb, t)
            per = []
            for p in store:
                side = int(round(p.shape[1] ** 0.5))
                m = p.permute(0, 2, 1).reshape(p.shape[0], 77, side, side)
                if (side, side) != grid:
                    m = F.interpolate(m, size=grid, mode="bicubic", align_corners=False).clamp_min(0)
                per.append(m)
            steps.append(torch.cat(per).mean(0))
    finally:
        for h in handles:
            h.remove()
    return torch.stack(steps)


def test_running_aggregation_equals_mean_of_stored_step_maps(unet):
    g = torch.Generator().manual_seed(2)
    x, emb = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 77, 32, generator=g)
    ts = [900, 500, 10]
    with torch.no_grad():
        ref = _reference_maps(unet, x, emb, ts, row=1)  # (3, 77, 16, 16)
        with AttentionCapture(unet, ["u", "c"], layout=["u", "c"], per_step=True, per_layer=True) as cap:
            for t in ts:
                _run(unet, x, emb, t)
    m = cap.maps([(1,), (2, 3), (5,)], "c")
    spans = [[1], [2, 3], [5]]
    want = torch.stack([ref[:, s].mean(1) for s in spans], 1)  # (3, 3, 16, 16)
    assert m.steps == 3 and np.allclose(m.levels, ts)
    assert np.allclose(m.step_maps, want.numpy(), atol=1e-5)
    assert np.allclose(m.maps, want.mean(0).numpy(), atol=1e-5)
    assert np.allclose(m.maps, m.step_maps.mean(0), atol=1e-6)
    assert m.layer_maps.shape == (len(cap.layers), 3, 16, 16)
    heads = [unet.get_submodule(n).heads for n in cap.layers]
    layer_mean = (m.layer_maps * np.array(heads)[:, None, None, None]).sum(0) / sum(heads)
    assert np.allclose(layer_mean, m.maps, atol=1e-5)
    assert np.allclose(cap.token_maps("c").sum(0).mean(), 1.0, atol=0.05)


def test_argument_errors(unet):
    with pytest.raises(ParameterError):
        AttentionCapture(unet, ["a", "b"])  # several prompts need a layout or embeddings
    with pytest.raises(ParameterError):
        AttentionCapture(unet, "a", layers=["nothing.here"])
    with pytest.raises(ParameterError):
        AttentionCapture(object(), "a")
    cap = AttentionCapture(unet, "a")
    with pytest.raises(ConditionError):
        cap.maps([(1,)])  # nothing captured yet
    with cap:
        _run(unet, torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32))
    with pytest.raises(ParameterError, match="tokenizer"):
        cap.maps(["cat"])
    with pytest.raises(ConditionError):
        cap.maps([(80,)])


def test_lora_layers_and_scale_are_respected():
    peft = pytest.importorskip("peft")
    u = tiny_unet()
    u.add_adapter(peft.LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in u.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    x, e = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 32, generator=g)
    maps = {}
    for scale in (0.0, 0.5, 1.0):
        kw = {"cross_attention_kwargs": {"scale": scale}}
        with torch.no_grad():
            ref = u(x, 5, e, **kw).sample
            with AttentionCapture(u, "p") as cap:
                out = u(x, 5, e, **kw).sample
        assert torch.equal(ref, out)
        maps[scale] = cap.token_maps()
    u.disable_adapters()
    with torch.no_grad(), AttentionCapture(u, "p") as cap:
        u(x, 5, e)
    assert torch.allclose(maps[0.0], cap.token_maps(), atol=1e-6)
    assert not torch.allclose(maps[0.5], maps[0.0], atol=1e-4) and not torch.allclose(maps[1.0], maps[0.5], atol=1e-4)


def test_encoder_attention_mask_is_applied(unet):
    g = torch.Generator().manual_seed(4)
    x, e = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 77, 32, generator=g)
    mask = torch.zeros(2, 77)
    mask[:, :5] = 1  # only tokens 0..4 may be attended to
    with torch.no_grad():
        ref = unet(x, 5, e, encoder_attention_mask=mask).sample
        with AttentionCapture(unet, ["u", "c"], layout=["u", "c"]) as cap:
            out = unet(x, 5, e, encoder_attention_mask=mask).sample
    assert torch.equal(ref, out)
    tm = cap.token_maps("c")
    assert tm[5:].abs().max() < 1e-6 and torch.allclose(tm[:5].sum(0), torch.ones(16, 16), atol=0.05)
