"""Attention maps of the flow-matching backend's tiny pipelines, through the model's joint-attention adapter."""

import numpy as np
import pytest
import torch

from diffpid.attention import AttentionCapture, attention_maps
from diffpid.attention.joint import JointAttentionAdapter
from diffpid.models.loading import load_model

tiny_flow = pytest.importorskip("tiny_flow")

PROMPT = "a red cat on a table"


@pytest.fixture(scope="module", params=["sd3", "flux-dev", "flux2", "chroma"])
def model(request):
    return load_model(tiny_flow.flow_folder(request.param))


def test_scores_and_concepts_at_the_engines_noise_levels(model):
    assert model.has("attention") and isinstance(model.attention_adapter(), JointAttentionAdapter)
    x = torch.randn(1, *model.data_shape, generator=torch.Generator().manual_seed(0))
    m = attention_maps(model, x[0], ["red", "cat"], PROMPT, samples=4, seed=0, per_step=True, per_layer=True)
    assert m.maps.shape == (2, *model.resolution) and m.steps == 4 and (m.maps >= 0).all()
    assert m.step_maps.shape == (4, 2, *model.resolution) and len(m.layers) == m.layer_maps.shape[0]
    assert m.tokens == model.token_spans(PROMPT, ["red", "cat"])
    c = attention_maps(model, x[0], ["red", "cat"], PROMPT, samples=4, seed=0, attention="concepts")
    assert c.maps.shape == (2, *model.resolution) and np.isfinite(c.maps).all()


def test_every_text_token_together_has_all_the_attention(model):
    """On the token grid the maps of all text tokens sum to one at every image token (softmax over text)."""
    x = torch.randn(2, *model.data_shape, generator=torch.Generator().manual_seed(1))
    cond = model.encode_prompt(PROMPT)
    with AttentionCapture.for_model(model, PROMPT) as cap:
        from diffpid.attention import LabelledModel

        LabelledModel(model, cap, [(cond, PROMPT)]).eps(x, torch.tensor([0.0, 2.0]), [cond])
    tm = cap.token_maps(image=1)
    grid = model.attention_adapter().fixed_grid  # the backend's image-token grid
    assert tm.shape == (cond.embeddings.shape[0], *grid) and cap.steps(image=0) == 1
    assert torch.allclose(tm.sum(0), torch.ones(()), atol=1e-4)


def test_maps_while_generating_match_rows_by_text_embedding(model):
    m = attention_maps(model, PROMPT, ["cat"], steps=2, seed=0)
    assert m.steps == 2 and m.generated is not None and m.maps.shape == (1, *model.resolution)
    assert np.isfinite(m.maps).all() and m.maps.min() >= 0
