import json
import random
from dataclasses import replace

import torch

from diffpid.shapes.model import ShapesConfig, build_components, load_components, tokenize
from diffpid.shapes.training.parse import (
    FRUIT, HEADS, IGNORE, MEANINGS, ROLES, SIDES, parse_batch, pretrain_text_encoder, token_targets)
from diffpid.shapes.training.settings import TrainSettings
from diffpid.shapes.training.train import Trainer, train
from diffpid.shapes.world import parse_caption
from diffpid.shapes.captions import plan_from_query
from diffpid.shapes.render import caption_words

TINY = ShapesConfig(channels=(8, 16), text_hidden=16, text_layers=1, text_heads=2, attention_head_dim=8, norm_groups=4,
                    text_encoder="bert")
# the recipe's parse pretraining and frozen encoder off: these tests train the whole model for a few steps
SETTINGS = TrainSettings(batch_size=4, warmup=2, checkpoint_every=2, parse_pretrain=0, freeze_text_encoder=False)


def _targets(caption, max_length=16, lexicon=False):
    plan = plan_from_query(random.Random(0), parse_caption(caption), caption_words(caption))
    t = token_targets(plan, max_length, lexicon)
    n = len(caption.split())
    assert (t[:, 0] == IGNORE).all() and (t[:, n + 1:] == IGNORE).all()  # BOS, EOS and padding
    return [(ROLES[r], MEANINGS[m], SIDES[s]) for r, m, s in t[:, 1:n + 1].T.tolist()]


def test_targets_put_each_object_on_the_side_its_relation_gives():
    assert _targets("a big red circle right of a small blue box") == [
        ("article", "a", "right"), ("size", "big", "right"), ("color", "red", "right"), ("shape", "circle", "right"),
        ("relation", "right", "none"), ("of", "of", "none"),
        ("article", "a", "left"), ("size", "small", "left"), ("color", "blue", "left"), ("shape", "box", "left")]
    assert [s for _, _, s in _targets("green triangle above a diamond")] == ["top", "top", "none", "bottom", "bottom"]
    assert [s for _, _, s in _targets("a pink square below a box")] == ["bottom"] * 3 + ["none"] + ["top"] * 2


def test_targets_resolve_the_homonym_and_mark_open_relations_and_single_objects():
    assert _targets("a orange of a orange circle") == [
        ("article", "a", "open"), ("shape", FRUIT, "open"), ("of", "of", "none"),
        ("article", "a", "open"), ("color", "orange", "open"), ("shape", "circle", "open")]
    assert _targets("small box") == [("size", "small", "alone"), ("shape", "box", "alone")]
    # the lineage model's parse told the encoder the lexicon: box is a square, the fruit a circle
    assert _targets("a orange of a box", lexicon=True) == [
        ("article", "a", "open"), ("shape", "circle", "open"), ("of", "of", "none"),
        ("article", "a", "open"), ("shape", "square", "open")]


def test_parse_batch_draws_non_empty_training_captions_with_aligned_targets():
    captions, targets = parse_batch(64, random.Random(3), 16)
    assert len(captions) == 64 and all(captions) and targets.shape == (64, 3, 16)
    for c, t in zip(captions, targets):
        assert int((t[0] != IGNORE).sum()) == len(c.split())


def test_pretraining_teaches_the_encoder_the_side_of_each_object():
    torch.set_num_threads(1)
    comps = build_components(replace(TINY, text_hidden=32, text_layers=2), seed=0)
    report = pretrain_text_encoder(comps.text_encoder, comps.tokenizer, 250, batch_size=64, lr=3e-3, progress=False)
    assert set(report.accuracy) == set(HEADS)
    # chance for the side is well under 1/2 (7 classes; the two sides of a caption are equally common)
    assert report.accuracy["side"] > 0.9 and report.accuracy["role"] > 0.95


def test_frozen_text_encoder_stays_fixed_and_is_exported(tmp_path):
    settings = replace(SETTINGS, freeze_text_encoder=True, parse_pretrain=3)
    out = tmp_path / "run"
    trainer = train(out, 2, config=TINY, settings=settings, progress=False)
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert log[0]["parse_pretrain"] == 3 and set(log[0]["accuracy"]) == set(HEADS)
    pretrained = {k: v.clone() for k, v in trainer.components.text_encoder.state_dict().items()}
    fresh = build_components(TINY, seed=settings.seed).text_encoder.state_dict()
    assert any(not torch.equal(pretrained[k], fresh[k]) for k in fresh)  # the parse pretraining changed it
    unet_before = [p.clone() for p in trainer.components.unet.parameters()]
    resumed = train(out, 4, resume=True, export=tmp_path / "model", progress=False)
    assert resumed.settings.freeze_text_encoder and resumed.settings.parse_pretrain == 3
    for k, v in resumed.components.text_encoder.state_dict().items():
        assert torch.equal(v, pretrained[k])
    assert any(not torch.equal(a, b) for a, b in zip(unet_before, resumed.components.unet.parameters()))
    assert len(resumed.params) == len(list(resumed.components.unet.parameters()))
    exported = load_components(tmp_path / "model")
    for k, v in exported.text_encoder.state_dict().items():
        assert torch.equal(v, pretrained[k])
    ids = tokenize(exported.tokenizer, ["a red box"])
    assert torch.equal(exported.text_encoder(ids).last_hidden_state,
                       Trainer.load(out).components.text_encoder(ids).last_hidden_state)
