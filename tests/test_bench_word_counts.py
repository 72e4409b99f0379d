"""benchmarks/shapes_word_counts.py: objects per image for bare words, model against world."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from shapes_word_counts import table, tally, world_images  # noqa: E402


def test_the_world_draws_one_object_for_a_bare_word_and_the_checker_reads_it():
    for word, shape, colour in (("red", None, "red"), ("circle", "circle", None), ("orange", "circle", None),
                                ("a blue", None, "blue"), ("a orange", "circle", None)):
        counts = tally(world_images(word, 12, seed=5))
        assert counts["objects"] == {"1": 12}
        if shape:
            assert counts["shapes"] == {shape: 12}
        if colour:
            assert counts["colours"] == {colour: 12}


def test_the_empty_caption_has_one_object_about_two_fifths_of_the_time():
    ones = int(tally(world_images("", 200, seed=0))["objects"].get("1", 0))
    assert 60 <= ones <= 100  # 0.4 x 200 = 80, binomial sd 6.9


def test_table_row():
    counts = {"objects": {"1": 3, "2": 1}, "shapes": {"circle": 5}, "colours": {"red": 5}}
    world = {"objects": {"1": 4}, "shapes": {}, "colours": {}}
    rows = table({"prompts": {"red": {"model": counts, "world": world}}})
    assert rows[2] == '| "red" | 3 of 4 | 4 of 4 | 1: 3, 2: 1 | circle 5 | red 5 |'
