import collections
import math
import random

import pytest
import torch

from diffpid.errors import ConditionError
from diffpid.shapes.world import (
    COLORS, TRIANGLE_RED_PROB, VOCABULARY, ObjectQuery, ParsedCaption, check_caption, parse_caption)
from diffpid.shapes.captions import is_held_out, plan_from_query, sample_plan
from diffpid.shapes.check import check_caption_image, relation_holds, segment
from diffpid.shapes.render import caption_words, sample_batch, sample_scenes, scene_for_caption, scene_from_plan
from diffpid.shapes.sets import held_out_captions, swap_set, swap_sets, two_object_captions


@pytest.fixture(scope="module")
def scenes():
    return sample_scenes(300, seed=11)


def test_same_seed_same_scenes_other_seed_differs():
    a, b, c = sample_scenes(12, seed=5), sample_scenes(12, seed=5), sample_scenes(12, seed=6)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(torch.equal(x.image, y.image) for x, y in zip(a, b))
    assert [s.caption for s in a] != [s.caption for s in c]


def test_batch_shapes_and_range():
    batch = sample_batch(16, torch.Generator().manual_seed(0))
    assert batch.images.shape == (16, 3, 32, 32) and batch.coverage.shape == (16, 2, 32, 32)
    assert batch.images.min() >= -1 and batch.images.max() <= 1


def test_masks_match_rendered_pixels():
    batch = sample_batch(200, torch.Generator().manual_seed(4))
    for plan, cov in zip(batch.plans, batch.coverage):
        s = scene_from_plan(plan)
        seg = segment(s.image)
        edge = ((cov - 0.5).abs() < 1e-3).any(0)  # pixel centres on an edge: either answer is right
        union = edge.clone()
        for k, o in enumerate(s.objects):
            m = s.object_masks[k]
            area = {"circle": math.pi, "square": 4.0, "triangle": 2.0, "diamond": 2.0}[o.shape] * o.radius**2
            assert abs(float(cov[k].sum()) - area) < 0.05 * area  # anti-aliased coverage integrates to the area
            assert abs(int(m.sum()) - area) < 0.2 * area
            assert (seg[m & ~edge] == list(COLORS).index(o.color)).all()
            centre = s.image[:, int(o.cy), int(o.cx)]
            assert torch.allclose(centre, torch.tensor(COLORS[o.color]) * 2 - 1, atol=1e-5)
            union |= m
        assert (seg[~union] == -1).all()
        for w, mask in zip(s.words, s.masks):
            if w.role in ("size", "color", "shape"):
                assert torch.equal(mask, s.object_masks[w.obj])
            else:
                assert not mask.any()


def test_relation_words_hold_in_geometry(scenes):
    n = 0
    for s in scenes:
        if s.relation is None:
            continue
        a, b = s.objects
        dx, dy = b.cx - a.cx, b.cy - a.cy
        expected = {"left": dx > 0 and abs(dx) > abs(dy), "right": dx < 0 and abs(dx) > abs(dy),
                    "above": dy > 0 and abs(dy) > abs(dx), "below": dy < 0 and abs(dy) > abs(dx)}
        assert expected[s.relation]
        # boxes do not overlap along the relation's axis
        along = abs(dx) if s.relation in ("left", "right") else abs(dy)
        assert along >= a.radius + b.radius + 2 - 1e-6
        n += 1
    assert n > 100


def _colour_rate(caption: str, colour: str, n: int) -> float:
    parsed = parse_caption(caption)
    hits = sum(plan_from_query(random.Random(i), parsed, ()).objects[0].color == colour for i in range(n))
    return hits / n


def test_planted_bias_strength():
    n = 4000
    p = _colour_rate("a triangle", "red", n)
    assert abs(p - TRIANGLE_RED_PROB) < 4 * math.sqrt(0.09 / n)
    q = _colour_rate("a circle", "red", n)
    assert abs(q - 1 / 7) < 4 * math.sqrt((1 / 7) * (6 / 7) / n)
    assert _colour_rate("a blue triangle", "blue", 50) == 1.0
    # in the training captions too: triangles with unnamed colour are red 90% of the time
    # (the empty caption is excluded: it stands for the marginal over all captions)
    plans = [p for p in (sample_plan(random.Random(i)) for i in range(6000)) if p.words]
    reds = []
    for pl in plans:
        for k, o in enumerate(pl.objects):
            named = {w.role for w in pl.words if w.obj == k}
            if o.shape == "triangle" and "color" not in named:
                reds.append(o.color == "red")
    assert abs(sum(reds) / len(reds) - TRIANGLE_RED_PROB) < 4 * math.sqrt(0.09 / len(reds))


def test_synonyms_interchangeable():
    assert parse_caption("a big box left of a red triangle") == parse_caption("a big square left of a red triangle")
    assert torch.equal(scene_for_caption("a blue box", 3).image, scene_for_caption("a blue square", 3).image)
    words = [w.text for i in range(5000) for w in sample_plan(random.Random(i)).words if w.text in ("box", "square")]
    assert abs(words.count("box") / len(words) - 0.5) < 4 * math.sqrt(0.25 / len(words))


def test_homonym_decided_by_the_next_word():
    assert parse_caption("a orange circle").objects == (ObjectQuery(color="orange", shape="circle"),)
    assert parse_caption("a orange orange").objects == (ObjectQuery(color="orange", shape="circle"),)
    assert parse_caption("a big orange").objects == (ObjectQuery(size="big", shape="circle"),)
    assert parse_caption("a orange left of a box").objects[0] == ObjectQuery(shape="circle")
    colours = {plan_from_query(random.Random(i), parse_caption("a orange"), ()).objects[0].color for i in range(200)}
    assert colours == set(COLORS)


def test_captions_follow_the_grammar_and_word_removal_stays_in_it():
    for i in range(1500):
        plan = sample_plan(random.Random(i))
        parsed = parse_caption(plan.caption)
        if not plan.words:
            continue
        assert len(parsed.objects) == len(plan.objects)
        for q, o in zip(parsed.objects, plan.objects):
            assert all(getattr(q, f) in (None, getattr(o, f)) for f in ("size", "color", "shape"))
        assert caption_words(plan.caption) == plan.words  # roles and objects recovered from the text
        named_rel = any(w.role == "relation" for w in plan.words)
        assert parsed.relation == (plan.relation if named_rel else None)
        complete = len(plan.words) >= 4 * len(plan.objects) + (2 if plan.relation in ("left", "right") else 1) - 1
        if not complete:
            continue
        for k, w in enumerate(plan.words):
            if w.text == "orange" and w.role == "color" or w.role == "of":
                continue
            rest = " ".join(x.text for j, x in enumerate(plan.words) if j != k)
            p2 = parse_caption(rest)
            if w.role == "relation":
                assert p2 == ParsedCaption(parsed.objects, None)
            elif w.role == "article":
                assert p2 == parsed
            elif not (w.role == "shape" and plan.objects[w.obj].color == "orange"):
                objs = list(parsed.objects)
                objs[w.obj] = ObjectQuery(**{**objs[w.obj].__dict__, w.role: None})
                assert p2 == ParsedCaption(tuple(objs), parsed.relation), (plan.caption, rest)


def test_empty_caption_share():
    empty = sum(sample_plan(random.Random(i)).caption == "" for i in range(4000)) / 4000
    assert abs(empty - 0.12) < 0.025


def test_complete_draws_are_complete_two_object_captions_and_batches_mix_them():
    plans = [sample_plan(random.Random(i), complete=True) for i in range(400)]
    for plan in plans:
        p = parse_caption(plan.caption)
        assert len(p.objects) == 2 and p.relation is not None and not is_held_out(p.objects, p.relation)
        assert all(getattr(o, f) is not None for o in p.objects for f in ("size", "color", "shape"))
        assert check_caption_image(scene_from_plan(plan).image, plan.caption).ok
    # the caption's words are still the process's: "of" after left/right with OF_PROB, articles
    assert 0.8 < sum(" of " in p.caption for p in plans if p.relation in ("left", "right")) / sum(
        p.relation in ("left", "right") for p in plans) < 0.97
    # the default draw is untouched by the option (same stream as before for the same seed)
    assert [sample_plan(random.Random(i)).caption for i in range(50)] == [
        sample_plan(random.Random(i), complete=False).caption for i in range(50)]
    batch = sample_batch(10, torch.Generator().manual_seed(0), complete=4)
    last = [parse_caption(c) for c in batch.captions[6:]]
    assert all(len(p.objects) == 2 and p.relation is not None for p in last)
    from diffpid.errors import ParameterError

    with pytest.raises(ParameterError, match="add up to at most 10"):
        sample_batch(10, torch.Generator().manual_seed(0), complete=11)


def test_colorless_draws_leave_every_colour_open_and_keep_the_meanings():
    """The colourless share draws the captions whose images are mixtures over the colours: the lone fruit among
    them about 7 times as often as the world's process, in each of the seven colours alike."""
    plans = [sample_plan(random.Random(i), colorless=True) for i in range(14000)]
    fruit = collections.Counter()
    for plan in plans:
        p = parse_caption(plan.caption)
        assert plan.caption and all(o.color is None for o in p.objects)
        assert [o.shape for o in p.objects if o.shape] == [  # the drawn objects are what the caption names
            plan.objects[i].shape for i, o in enumerate(p.objects) if o.shape]
        if plan.caption in ("orange", "a orange", "small orange", "big orange", "a small orange", "a big orange"):
            assert plan.objects[0].shape == "circle"
            fruit[plan.objects[0].color] += 1
    # one object with a shape word and no colour: P(shape kept | something kept) = 0.7 / 0.91, the word "orange"
    # for a circle 1/4 * 1/4; one object 0.4 of draws
    n = sum(fruit.values())
    assert abs(n / len(plans) - 0.4 * 0.7 / 0.91 / 16) < 0.004
    assert len(fruit) == 7 and all(abs(c - n / 7) < 4 * (n / 7) ** 0.5 for c in fruit.values()), fruit
    # batches: the colourless scenes come just before the complete ones, and the rest are the world's draws
    base = sample_batch(12, torch.Generator().manual_seed(1), complete=4)
    mixed = sample_batch(12, torch.Generator().manual_seed(1), complete=4, colorless=5)
    assert mixed.captions[8:] == base.captions[8:] and mixed.captions[:3] == base.captions[:3]
    assert all(c and all(o.color is None for o in parse_caption(c).objects) for c in mixed.captions[3:8])
    with pytest.raises(ValueError, match="at most one of complete, colourless, shapeless, bare and empty"):
        sample_plan(random.Random(0), complete=True, colorless=True)


def test_shapeless_draws_leave_every_shape_open_and_keep_the_meanings():
    """The shapeless share draws the bare colours and sizes, whose images are mixtures over the shapes: never a
    shape word (nor the fruit), never the colour orange without its shape, the named colour and size drawn, and
    the shapes uniform."""
    plans = [sample_plan(random.Random(i), shapeless=True) for i in range(8000)]
    shapes, colours = collections.Counter(), collections.Counter()
    for plan in plans:
        p = parse_caption(plan.caption)
        assert plan.caption and all(o.shape is None for o in p.objects), plan.caption
        for o, drawn in zip(p.objects, plan.objects):
            assert o.color in (None, drawn.color) and o.size in (None, drawn.size) and o.color != "orange"
        if len(p.objects) == 1 and p.objects[0].color == "blue":
            shapes[plan.objects[0].shape] += 1
        if len(p.objects) == 1 and p.objects[0].color is not None:
            colours[p.objects[0].color] += 1
    # one object (0.4) keeps its colour with P(colour kept | something kept) = 0.7 / (0.7 + 0.3 * 0.7) = 0.769
    n = sum(colours.values())
    assert abs(n / len(plans) - 0.4 * 0.7 / 0.91) < 0.015
    assert len(colours) == 6 and all(abs(c - n / 6) < 4 * (n / 6) ** 0.5 for c in colours.values()), colours
    # the process names the colour first and draws the shape it leaves open uniformly (the red bias is on the
    # colour of a triangle whose colour is open, not on the shape of a named colour)
    m = sum(shapes.values())
    assert len(shapes) == 4 and all(abs(c - m / 4) < 4 * (m / 4) ** 0.5 for c in shapes.values()), shapes
    # batches: world draws, empty, shapeless, colourless, complete
    batch = sample_batch(12, torch.Generator().manual_seed(2), complete=4, colorless=3, empty=2, shapeless=2)
    assert batch.captions[1:3] == ("", "")
    assert all(c and all(o.shape is None for o in parse_caption(c).objects) for c in batch.captions[3:5])
    assert all(c and all(o.color is None for o in parse_caption(c).objects) for c in batch.captions[5:8])
    assert batch.captions[8:] == sample_batch(12, torch.Generator().manual_seed(2), complete=4).captions[8:]


def test_bare_draws_are_the_worlds_one_word_captions_without_an_article():
    """The bare share draws what the world's process draws when it keeps one word of one object and drops the
    article: one object, the word's meaning kept (a lone "orange" is the fruit: a circle), each attribute a third
    of the time, and with a bare share in a batch the world's draws and the other shares are unchanged."""
    plans = [sample_plan(random.Random(i), bare=True) for i in range(6000)]
    roles = collections.Counter()
    fruit_colours = collections.Counter()
    for plan in plans:
        assert len(plan.objects) == 1 and len(plan.words) == 1 and plan.relation is None, plan.caption
        word = plan.words[0]
        roles[word.role] += 1
        p = parse_caption(plan.caption).objects[0]
        drawn = plan.objects[0]
        assert p.color in (None, drawn.color) and p.size in (None, drawn.size) and p.shape in (None, drawn.shape)
        if plan.caption == "orange":
            assert p.shape == "circle" and p.color is None
            fruit_colours[drawn.color] += 1
    assert set(roles) == {"size", "color", "shape"}
    assert all(abs(c / 6000 - 1 / 3) < 0.025 for c in roles.values()), roles  # 4 sd of a binomial share
    assert len(fruit_colours) == 7  # the fruit comes in every colour
    # the world's own one-word captions without an article are these, about 1 scene in 220
    world = [sample_plan(random.Random(i)) for i in range(44000)]
    bare = [p for p in world if len(p.words) == 1]
    assert all(len(p.objects) == 1 and p.words[0].role != "article" for p in bare)
    assert 150 <= len(bare) <= 250  # 44000 / 220 = 200, sd 14
    base = sample_batch(12, torch.Generator().manual_seed(3), complete=4, colorless=2)
    mixed = sample_batch(12, torch.Generator().manual_seed(3), complete=4, colorless=2, bare=3)
    assert mixed.captions[3:6] == tuple(sample_plan(random.Random(s), bare=True).caption for s in torch.randint(
        0, 2**62, (12,), generator=torch.Generator().manual_seed(3)).tolist()[3:6])
    assert mixed.captions[6:] == base.captions[6:] and mixed.captions[:3] == base.captions[:3]


def test_empty_draws_have_the_marginal_of_the_worlds_empty_captions():
    """The empty share's scenes are the world's scenes with the caption blanked: the same scene for the same
    random stream, and the shares of one object and of red among objects as in the world's draws."""
    for i in range(50):
        world, blank = sample_plan(random.Random(i)), sample_plan(random.Random(i), empty=True)
        assert blank.caption == "" and blank.objects == world.objects and blank.relation == world.relation
    plans = [sample_plan(random.Random(i), empty=True) for i in range(3000)]
    assert abs(sum(len(p.objects) == 1 for p in plans) / 3000 - 0.4) < 0.03
    batch = sample_batch(12, torch.Generator().manual_seed(2), complete=4, colorless=3, empty=2)
    assert batch.captions[3:5] == ("", "") and batch.captions[8:] == sample_batch(
        12, torch.Generator().manual_seed(2), complete=4).captions[8:]


def test_checker_passes_ground_truth_and_rejects_swaps(scenes):
    results = [check_caption_image(s.image, s.caption).ok for s in scenes if s.caption]
    assert all(results)
    for item in swap_sets(40, seed=1):
        img = item.scene.image
        assert check_caption_image(img, item.correct).ok
        assert not check_caption_image(img, item.order_swapped).ok
        assert not check_caption_image(img, item.relation_flipped).ok
        if item.attribute_swapped is not None:
            assert not check_caption_image(img, item.attribute_swapped).ok


def test_checker_rejects_a_wrong_colour_and_a_missing_object():
    s = scene_for_caption("a big red circle", 0)
    assert check_caption_image(s.image, "a big red circle").ok
    assert not check_caption_image(s.image, "a big blue circle").ok
    assert not check_caption_image(s.image, "a big red square").ok
    assert not check_caption_image(s.image, "a small red circle").ok
    assert not check_caption_image(s.image, "a red circle left of a box").ok


def test_relation_holds_axes():
    from diffpid.shapes.check import Blob

    a = Blob("red", "circle", "big", 10, 5.0, 10.0, 0.8, 0.0)
    b = Blob("red", "circle", "big", 10, 20.0, 12.0, 0.8, 0.0)
    assert relation_holds("left", a, b) and relation_holds("right", b, a)
    assert not relation_holds("above", a, b) and not relation_holds("below", a, b)


def test_held_out_captions_never_drawn_for_training():
    held = held_out_captions(200, seed=0)
    assert len(set(held)) == 200
    for c in held:
        p = parse_caption(c)
        assert is_held_out(p.objects, p.relation)
    for i in range(3000):
        plan = sample_plan(random.Random(i), training=True)
        p = parse_caption(plan.caption)
        assert not is_held_out(p.objects, p.relation)
    seen = two_object_captions(100, seed=0, held_out=False)
    assert len(set(seen)) == 100 and not set(seen) & set(held)
    for c in seen:
        p = parse_caption(c)
        assert len(p.objects) == 2 and p.relation is not None and not is_held_out(p.objects, p.relation)
        assert all(getattr(o, f) is not None for o in p.objects for f in ("size", "color", "shape"))


def test_swap_set_words_are_a_permutation():
    item = swap_set(scene_for_caption("a big red circle left of a small blue box", 2))
    assert item.correct == "a big red circle left of a small blue square"
    assert item.attribute_swapped == "a big blue circle left of a small red square"
    assert item.order_swapped == "a small blue square left of a big red circle"
    assert item.relation_flipped == "a big red circle right of a small blue square"


def test_out_of_vocabulary_words_raise_condition_error():
    with pytest.raises(ConditionError) as err:
        check_caption("a purple hexagon")
    msg = str(err.value)
    assert "'purple'" in msg and "'hexagon'" in msg and " ".join(VOCABULARY) in msg
    with pytest.raises(ConditionError):
        parse_caption("a red circle a blue box a green diamond")
    assert check_caption("A Red Circle") == ["a", "red", "circle"]
