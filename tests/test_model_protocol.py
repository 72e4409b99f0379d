"""The Model protocol's declared capabilities and identity, for every backend that is not a flow model."""

from pathlib import Path

import pytest
import torch

from diffpid.attention.adapters import UNetCrossAttentionAdapter
from diffpid.errors import ConditionError, ParameterError
from diffpid.models.base import CAPABILITIES, CapabilityError, Model, ModelIdentity
from diffpid.models.loading import from_pipeline
from diffpid.models.mixture import GaussianMixture
from diffpid.shapes.model import default_model_path, load_shapes_model
from tiny_pipelines import sd_pipeline


def test_the_unet_backend_declares_text_attention_images_and_generation():
    m = from_pipeline(sd_pipeline())
    assert m.capabilities == frozenset(CAPABILITIES)
    ident = m.identity()
    assert isinstance(ident, ModelIdentity) and ident.family == "unet" and ident.backend == "DiffusersModel"
    assert ident.dtype == "float32" and dict(ident.generation)["steps"] == 50
    assert ident.as_dict()["generation"]["guidance_scale"] == 7.5
    ad = m.attention_adapter()
    assert isinstance(ad, UNetCrossAttentionAdapter) and ad.module is m.unet
    assert ad.layers() == tuple(n for n, _ in m.unet.named_modules() if n.endswith("attn2")) and len(ad.layers()) == 7
    # CLIP: BOS is token 0, so "red" (the second word) is token 2
    assert m.token_spans("a red cat", ["red", "cat"]) == ((2,), (3,))
    assert m.token_span("a red cat", (1, 2)) == (1, 2)
    with pytest.raises(ConditionError):
        m.token_span("a red cat", "dog")


def test_the_shipped_shapes_model_says_its_training_step():
    m = load_shapes_model(device="cpu")
    ident = m.identity()
    # its training.json's recipe: the step, the lineage and the seed
    assert ident.revision == "step 8000, from scratch, seed 0" and ident.name == "shapes"
    assert ident.source is not None and Path(ident.source).resolve() == default_model_path().resolve()
    assert ident.as_dict()["source"] == ident.source
    assert dict(ident.generation) == {"scheduler": "ddpm", "steps": 50, "guidance_scale": 3.0}
    assert "images" not in m.capabilities and m.has("attention") and m.resolution == (32, 32)
    assert m.token_spans("a red circle", "circle") == ((3,),)


def test_the_mixture_oracle_declares_only_generation():
    m = GaussianMixture(torch.zeros(2, 3), 1.0, labels={"y": [0, 1]})
    assert m.capabilities == frozenset({"generate"}) and m.identity().family == "oracle"
    assert m.identity().source is None
    assert m.resolution is None and m.dtype == torch.float32
    for call in (lambda: m.tokenize("a"), lambda: m.token_span("a", "a"), m.attention_adapter,
                 lambda: m.encode_image(None), lambda: m.decode(torch.zeros(1, 3))):
        with pytest.raises(CapabilityError) as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(ParameterError):
        m.has("telepathy")
    from diffpid.attention import attention_maps

    with pytest.raises(CapabilityError, match="attention"):
        attention_maps(m, torch.zeros(3), ["a"], "a")


def test_a_bare_model_has_no_capabilities():
    class Bare(Model):
        data_shape = (2,)

    b = Bare()
    assert b.capabilities == frozenset() and b.identity() == ModelIdentity("model", "model", "Bare")
    with pytest.raises(CapabilityError, match="'attention'"):
        b.require("attention", "attention maps")
