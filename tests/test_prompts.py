"""Word location, removal and the condition prompts of MI, CMI and PID (no model needed)."""

import pytest

from diffpid.errors import ConditionError, ParameterError
from diffpid.prompts import (
    Token, WordSpan, cpid_prompts, find_word, find_words, keep_words, pid_prompts,
    prompt_words, remove_words, replace_word, tidy, token_span,
)


@pytest.mark.parametrize(
    "prompt, words, expected",
    [
        ("a cat, a dog and a red car.", ["a dog"], "a cat, and a red car."),
        ("cats and a cat", ["cat"], "cats and a"),  # "cats" is not "cat"
        ("a bobcat near a cat-like cat's toy", ["cat"], "a bobcat near a cat-like toy"),
        ("Cat, dog", ["cat"], "dog"),
        ("a dog, a cat.", ["a cat"], "a dog."),
        ("a (red) car", ["red"], "a car"),
        ("a cat and a cat", ["cat"], "a and a"),  # every occurrence of a string
        ("a  red   car in snow", ["red car"], "a in snow"),
        ("a cat; a dog", ["a dog"], "a cat"),
        ("a cat, (dog), bird", ["dog"], "a cat, bird"),
        ("a red cat on a blue mat", ["red", "blue"], "a cat on a mat"),
        ("concatenate a cat", ["cat"], "concatenate a"),
        ("a cat", ["a cat"], ""),
    ],
)
def test_remove_words(prompt, words, expected):
    assert remove_words(prompt, words) == expected


def test_remove_one_occurrence_by_span():
    prompt = "a cat chasing a cat"
    second = find_word(prompt, "cat", occurrence=1)
    assert (second.start, second.end, second.occurrence) == (16, 19, 1)
    assert remove_words(prompt, [second]) == "a cat chasing a"
    assert remove_words(prompt, [find_word(prompt, "cat")]) == "a chasing a cat"


def test_find_word_whole_word_case_insensitive():
    prompt = "A Cat sat by cats, a bobcat and the CAT."
    spans = find_words(prompt, "cat")
    assert [s.text for s in spans] == ["Cat", "CAT"]
    assert [prompt[s.start : s.end] for s in spans] == ["Cat", "CAT"]
    assert find_word(prompt, "cat") == spans[0]
    assert find_word(prompt, "cat", occurrence=1) == spans[1]
    with pytest.raises(ConditionError, match="occurs 2 time"):
        find_word(prompt, "cat", occurrence=2)
    phrase = find_word("a photo of a red\tcar", "red car")
    assert (phrase.text, phrase.start, phrase.end) == ("red\tcar", 13, 20)


def test_word_not_in_prompt_lists_words():
    with pytest.raises(ConditionError) as err:
        find_word("a red car, parked", "cat")
    msg = str(err.value)
    assert "'cat'" in msg and "a, red, car, parked" in msg
    with pytest.raises(ConditionError):
        remove_words("a cats' toy", ["cat"])
    with pytest.raises(ParameterError):
        find_word("a cat", "  ")


def test_keep_and_replace():
    assert keep_words("A dog chasing a red cat", ["cat", "dog"]) == "dog cat"
    assert keep_words("a cat and a cat", ["cat"]) == "cat"
    assert replace_word("a cat on a cat-like mat", "cat", "dog") == "a dog on a cat-like mat"
    assert replace_word("a cat, a dog", "a dog", "") == "a cat"
    with pytest.raises(ConditionError, match="overlap"):
        keep_words("a red car", ["red car", "car"])


def test_tidy():
    assert tidy("  , a cat ,  , and  .") == "a cat, and."
    assert tidy("a cat , ( ) dog ;") == "a cat, dog"
    assert prompt_words("a dog-like cat's toy, 2 cats") == ["a", "dog-like", "cat's", "toy", "2", "cats"]


def test_token_span_multi_token_and_bos():
    prompt = "a caterpillar on a cat"
    # tokens as a CLIP tokenizer gives them: BOS at index 0, the long word split in three
    toks = [Token(0, "<|startoftext|>", 0, 0, True), Token(1, "a</w>", 0, 1), Token(2, "cat", 2, 5),
            Token(3, "erpil", 5, 10), Token(4, "lar</w>", 10, 13), Token(5, "on</w>", 14, 16),
            Token(6, "a</w>", 17, 18), Token(7, "cat</w>", 19, 22), Token(8, "<|endoftext|>", 0, 0, True)]
    assert token_span(prompt, "caterpillar", toks) == (2, 3, 4)
    assert token_span(prompt, "cat", toks) == (7,)
    assert token_span(prompt, "a", toks, occurrence=1) == (6,)
    assert token_span(prompt, "on a", toks) == (5, 6)
    with pytest.raises(ConditionError, match="no tokens"):
        token_span(prompt, "cat", toks[:6])


def test_condition_prompts():
    prompt = "a dog chasing a red cat"
    assert remove_words(prompt, ["cat"]) == "a dog chasing a red"  # the context of the CMI of "cat"
    p = pid_prompts(prompt, "cat", "dog")
    assert p.prompts == ("", "cat", "dog", "dog cat") and not p.conditional
    assert pid_prompts(prompt, "cat", "dog", full_prompt=True).both == prompt
    q = cpid_prompts(prompt, "red", "cat")
    assert q.prompts == ("a dog chasing a", "a dog chasing a red", "a dog chasing a cat", prompt) and q.conditional
    with pytest.raises(ConditionError, match="overlap"):
        cpid_prompts("a red car", "red car", "car")
    with pytest.raises(ConditionError, match="its words are"):
        pid_prompts(prompt, "cat", "bird")


def test_span_checked_against_prompt():
    with pytest.raises(ConditionError):
        find_word("a dog", WordSpan("cat", 2, 5))
