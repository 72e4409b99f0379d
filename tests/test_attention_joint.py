"""Joint-attention (MM-DiT) capture on tiny SD3, Flux.1 and Flux.2 transformers built from configs."""

import pytest
import torch

from diffpid.attention import AttentionCapture
from diffpid.attention.joint import JointAttentionAdapter
from diffpid.errors import ConditionError, ParameterError
from diffpid.models.base import CapabilityError

T = 7  # text tokens
H, W = 4, 6  # image-token grid


def _ids(h, w, axes=3):
    ids = torch.zeros(h, w, axes)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None]
    return ids.reshape(-1, axes)


def tiny_flux(seed=0):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                  num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                  axes_dims_rope=[4, 4, 8]).eval()


def tiny_sd3(seed=0):
    """Two joint blocks (the last one context_pre_only), with SD3.5-Medium's q/k norms and attn2."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8,
                                 num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                 pooled_projection_dim=64, out_channels=4, dual_attention_layers=(0,),
                                 qk_norm="rms_norm").eval()  # SD3.5's layout: q/k RMS norms, an image-only attn2


def tiny_flux2(seed=0):
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(seed)
    return Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                   num_attention_heads=2, joint_attention_dim=32, timestep_guidance_channels=256,
                                   axes_dims_rope=[4, 4, 4, 4]).eval()


def flux_inputs(b=2, seed=1, grid=(H, W)):
    g = torch.Generator().manual_seed(seed)
    h, w = grid
    return dict(hidden_states=torch.randn(b, h * w, 4, generator=g), encoder_hidden_states=torch.randn(b, T, 32, generator=g),
                pooled_projections=torch.randn(b, 32, generator=g), timestep=torch.full((b,), 0.5),
                img_ids=_ids(h, w), txt_ids=torch.zeros(T, 3), return_dict=False)


def sd3_inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(b, 4, H, W, generator=g), encoder_hidden_states=torch.randn(b, T, 32, generator=g),
                pooled_projections=torch.randn(b, 64, generator=g), timestep=torch.full((b,), 500.0), return_dict=False)


def flux2_inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(b, H * W, 4, generator=g), encoder_hidden_states=torch.randn(b, T, 32, generator=g),
                timestep=torch.full((b,), 0.5), guidance=torch.full((b,), 3.5), img_ids=_ids(H, W, 4),
                txt_ids=torch.zeros(T, 4), return_dict=False)


MODELS = {"sd3": (tiny_sd3, sd3_inputs), "flux": (tiny_flux, flux_inputs), "flux2": (tiny_flux2, flux2_inputs)}


@pytest.fixture(scope="module", params=list(MODELS))
def family(request):
    make, inputs = MODELS[request.param]
    return request.param, make(), inputs


def _block_outputs(model, kwargs):
    """Every transformer block's outputs, in call order."""
    outs = []
    hooks = [m.register_forward_hook(lambda mod, a, o: outs.append(o)) for n, m in model.named_modules()
             if n.count(".") == 1 and n.split(".")[0] in ("transformer_blocks", "single_transformer_blocks")]
    try:
        with torch.no_grad():
            final = model(**kwargs)[0]
    finally:
        for h in hooks:
            h.remove()
    return outs + [final]


def _flat(x):
    return [t for o in x for t in (o if isinstance(o, tuple) else (o,)) if isinstance(t, torch.Tensor)]


def test_capture_leaves_every_block_output_bitwise_identical(family):
    name, model, inputs = family
    kw = inputs()
    ref = _flat(_block_outputs(model, kw))
    ad = JointAttentionAdapter(model)
    with AttentionCapture(ad, ["a", "b"], layout=["a", "b"], layers=list(ad.layers()), per_layer=True, per_head=True) as cap:
        got = _flat(_block_outputs(model, kw))
    assert len(ref) == len(got) and len(ref) >= 3
    assert all(torch.equal(r, g) for r, g in zip(ref, got))
    assert cap.token_maps("a").shape == (T, H, W) and cap.steps("b") == 1


def test_processors_are_restored_on_exit_and_on_error(family):
    name, model, inputs = family
    before = dict(model.attn_processors)
    ad = JointAttentionAdapter(model)
    with AttentionCapture(ad, "p", layers=list(ad.layers())):
        assert any(model.attn_processors[k] is not v for k, v in before.items())
    assert all(model.attn_processors[k] is v for k, v in before.items())
    with pytest.raises(RuntimeError, match="boom"):
        with AttentionCapture(ad, "p", layers=list(ad.layers())):
            raise RuntimeError("boom")
    assert all(model.attn_processors[k] is v for k, v in before.items())
    assert not model._forward_pre_hooks and not model._forward_hooks
    kw = inputs()
    with pytest.raises(ConditionError):  # two different rows and no layout: an error inside the forward call
        with AttentionCapture(ad, "p"):
            with torch.no_grad():
                model(**kw)
    assert all(model.attn_processors[k] is v for k, v in before.items())
    assert not model._forward_pre_hooks and not model._forward_hooks


def _layer_calls(model, kw, normalisation="text", layers=None):
    """The LayerCall objects of one forward call (kept for inspection) and the processors' outputs."""
    ad = JointAttentionAdapter(model, normalisation=normalisation)
    names = list(layers or ad.layers())
    calls, outs = {}, {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o)) for n in names]
    ad.install(names, lambda i, call: calls.__setitem__(names[i], call))
    try:
        with torch.no_grad():
            model.register_forward_pre_hook(ad._on_call, with_kwargs=True)
            model(**kw)
    finally:
        ad.restore()
        for h in hooks:
            h.remove()
        model._forward_pre_hooks.clear()
    return ad, calls, outs


def test_probabilities_sum_to_one_over_their_normalisation_set(family):
    name, model, inputs = family
    kw = inputs()
    _, text_calls, _ = _layer_calls(model, kw, "text")
    _, joint_calls, _ = _layer_calls(model, kw, "joint")
    for layer, call in text_calls.items():
        p = call.probabilities(None)  # (b, heads, n, T)
        assert p.shape[2:] == (H * W, T)
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5)
        j = joint_calls[layer].probabilities(None)
        mass = j.sum(-1)
        assert (mass < 1).all() and (mass > 0).all()
        # the text slice of the joint softmax plus the image slice is the whole softmax
        q, k, _ = joint_calls[layer].qkv(None)
        img, txt = joint_calls[layer]._spans(q.shape[2])
        full = (q[:, :, img] @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)
        assert torch.allclose(j, full[..., txt], atol=1e-6)
        assert torch.allclose(p, j / mass[..., None], atol=1e-5)


def test_recomputed_attention_matches_the_processor(family):
    """o = softmax(q k^T) v from the recomputed q, k, v equals what the block's processor computed."""
    name, model, inputs = family
    _, calls, outs = _layer_calls(model, inputs())
    for layer, call in calls.items():
        img, txt = call.outputs(None)  # (b, heads, n, d), (b, heads, T, d)
        attn = model.get_submodule(layer)
        o_img, o_txt = img.transpose(1, 2).flatten(2), txt.transpose(1, 2).flatten(2)
        out = outs[layer]
        if layer.startswith("single_transformer_blocks"):
            if name == "flux":  # the processor returns the joint attention output [text, image]
                assert torch.allclose(out, torch.cat([o_txt, o_img], 1), atol=1e-5)
            else:  # Flux.2's parallel block returns to_out(attention, mlp); compare the attention part's q, k, v
                assert o_img.shape == (2, H * W, attn.inner_dim)
            continue
        with torch.no_grad():
            expect_img = attn.to_out[0](o_img)
        assert torch.allclose(out[0], expect_img, atol=1e-5)
        if not getattr(attn, "context_pre_only", False) and getattr(attn, "to_add_out", None) is not None:
            with torch.no_grad():
                assert torch.allclose(out[1], attn.to_add_out(o_txt), atol=1e-5)


def test_only_the_captured_rows_are_computed_and_match_the_full_batch():
    model = tiny_flux()
    kw = flux_inputs(b=3)
    _, calls, _ = _layer_calls(model, kw)
    call = calls["transformer_blocks.0.attn"]
    full = call.probabilities(None)
    call2 = _layer_calls(model, kw)[1]["transformer_blocks.0.attn"]
    part = call2.probabilities(torch.tensor([2]))
    assert part.shape[0] == 1 and torch.allclose(part[0], full[2], atol=1e-6)


def forced_flux(j=2, m=5):
    """A Flux transformer whose dual-stream block makes left-half image tokens attend text token ``j``
    and right-half ones token ``m``; returns the model and its inputs (img_ids all zero: no rotation)."""
    model = tiny_flux()
    blk = model.transformer_blocks[0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.x_embedder.weight[0, 0] = 1.0  # token embedding (x0, 0, ..., 0)
        model.context_embedder.weight[0, 0] = 1.0
        g = torch.Generator().manual_seed(0)
        wq = torch.randn(32, 32, generator=g)
        a = blk.attn
        for lin in (a.to_q, a.add_k_proj, a.add_q_proj):
            lin.weight.copy_(wq)
        a.add_v_proj.weight.copy_(torch.eye(32) * 3)
        for n in (a.norm_q, a.norm_added_k, a.norm_added_q, a.norm_k):
            n.weight.fill_(10.0)
        for n in (model.single_transformer_blocks[0].attn.norm_q, model.single_transformer_blocks[0].attn.norm_k):
            n.weight.fill_(1.0)
    x = torch.zeros(1, H, W, 4)
    x[:, :, : W // 2, 0] = 1.0  # left half +1, right half -1 on channel 0
    x[:, :, W // 2 :, 0] = -1.0
    e = torch.zeros(1, T, 32)
    e[0, j, 0], e[0, m, 0] = 1.0, -1.0
    kw = dict(hidden_states=x.reshape(1, H * W, 4), encoder_hidden_states=e, pooled_projections=torch.zeros(1, 32),
              timestep=torch.full((1,), 0.5), img_ids=torch.zeros(H * W, 3), txt_ids=torch.zeros(T, 3),
              return_dict=False)
    return model, kw


def test_a_transformer_forced_to_attend_one_token_puts_the_map_there():
    j, m = 2, 5
    model, kw = forced_flux(j, m)
    with AttentionCapture(JointAttentionAdapter(model, grid=(H, W)), "p") as cap:
        with torch.no_grad():
            model(**kw)
    tm = cap.token_maps()  # (T, H, W), softmax over the text tokens
    left, right = tm[:, :, : W // 2], tm[:, :, W // 2 :]
    assert torch.allclose(left[j], torch.ones(()), atol=1e-4) and torch.allclose(right[m], torch.ones(()), atol=1e-4)
    assert left[m].max() < 1e-4 and right[j].max() < 1e-4
    maps = cap.maps([(j,), (m,)])
    assert maps.maps[0][:, : W // 2].min() > 0.999 and maps.maps[1][:, W // 2 :].min() > 0.999


def test_concept_attention_on_a_constructed_case():
    j, m = 2, 5
    model, kw = forced_flux(j, m)
    ad = JointAttentionAdapter(model, grid=(H, W))
    with AttentionCapture(ad, "p", method="concepts", concepts=[(j,), (m,)], concept_labels=["left", "right"],
                          per_head=True) as cap:
        with torch.no_grad():
            model(**kw)
    tm = cap.token_maps()  # (2 concepts, H, W): softmax over the concepts
    assert tm.shape == (2, H, W)
    assert torch.allclose(tm.sum(0), torch.ones(()), atol=1e-5)
    assert tm[0, :, : W // 2].min() > 0.99 and tm[1, :, W // 2 :].min() > 0.99
    maps = cap.maps(["right", "left"])
    assert maps.words == ("right", "left") and maps.tokens == ((m,), (j,))
    assert maps.maps[0][:, W // 2 :].min() > 0.99 and maps.maps[1][:, W // 2 :].max() < 0.01
    assert len(maps.head_maps) == 1 and maps.head_maps[0].shape == (2, 2, H, W)
    with pytest.raises(ConditionError):
        cap.maps(["elsewhere"])


def test_grid_from_img_ids_and_sd3_patches_and_errors():
    model = tiny_flux()
    ad = JointAttentionAdapter(model)
    kw = flux_inputs(b=1, grid=(3, 8))
    with AttentionCapture(ad, "p") as cap:
        with torch.no_grad():
            model(**kw)
    assert cap.token_maps().shape == (T, 3, 8)
    with pytest.raises(ParameterError):
        JointAttentionAdapter(model, normalisation="cosine")
    with pytest.raises(ParameterError):
        JointAttentionAdapter(torch.nn.Linear(2, 2))
    with pytest.raises(ParameterError):
        AttentionCapture(ad, "p", layers=["nothing.here"])
    with pytest.raises(ParameterError):
        AttentionCapture(ad, "p", method="concepts")  # concepts are needed
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    with pytest.raises(CapabilityError):
        AttentionCapture(unet, "p", method="concepts", concepts=[(1,)])


def test_chroma_text_mask_is_respected():
    """Chroma masks text padding: masked text tokens get no attention, the rest sums to one."""
    from diffusers import ChromaTransformer2DModel

    torch.manual_seed(0)
    model = ChromaTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                     num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 4, 8),
                                     approximator_num_channels=8, approximator_hidden_dim=32, approximator_layers=1).eval()
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(1, T + H * W, dtype=torch.bool)
    mask[0, 4:T] = False  # text tokens 4.. are padding
    kw = dict(hidden_states=torch.randn(1, H * W, 4, generator=g), encoder_hidden_states=torch.randn(1, T, 32, generator=g),
              timestep=torch.full((1,), 0.5), img_ids=_ids(H, W), txt_ids=torch.zeros(T, 3), attention_mask=mask,
              return_dict=False)
    with torch.no_grad():
        ref = model(**kw)[0]
    ad = JointAttentionAdapter(model)
    with AttentionCapture(ad, "p", layers=list(ad.layers())) as cap:
        with torch.no_grad():
            out = model(**kw)[0]
    assert torch.equal(ref, out)
    tm = cap.token_maps()
    assert tm[4:].abs().max() < 1e-6 and torch.allclose(tm[:4].sum(0), torch.ones(()), atol=1e-5)
    _, calls, outs = _layer_calls(model, kw)
    img, txt = calls["single_transformer_blocks.0.attn"].outputs(None)
    o = torch.cat([txt, img], 2).transpose(1, 2).flatten(2)
    assert torch.allclose(outs["single_transformer_blocks.0.attn"], o, atol=1e-5)


def test_a_second_capture_on_the_same_adapter_is_refused_and_leaves_the_first_intact():
    model = tiny_flux()
    ad = JointAttentionAdapter(model)
    kw = flux_inputs(b=1)
    with AttentionCapture(ad, "p") as cap:
        wrapped = dict(model.attn_processors)
        with pytest.raises(ParameterError, match="already"):
            with AttentionCapture(ad, "q"):
                pass
        assert all(model.attn_processors[k] is v for k, v in wrapped.items())
        with torch.no_grad():
            model(**kw)
    assert cap.steps() == 1
