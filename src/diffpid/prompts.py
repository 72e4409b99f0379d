"""Words and token spans of a prompt, and the prompts that MI, CMI and PID compare.

A *word* here is a case-insensitive, whole-word match of a word or phrase: ``"cat"`` is
found in ``"A Cat, sitting"`` but not in ``"cats"``, ``"bobcat"``, ``"cat-like"`` or
``"cat_2"``; a possessive ``"cat's"`` does contain ``"cat"``. A phrase (``"red car"``)
matches its words separated by any whitespace. Removal never cuts inside another word
(the published code deleted raw substrings: SCIENCE.md section 3) and tidies spacing and
punctuation afterwards.

Strings name *every* occurrence of a word (removal and replacement act on all of them,
:func:`find_word` returns the first); a :class:`WordSpan` from :func:`find_word` /
:func:`find_words` names one occurrence.

Token spans need the model's tokenizer: ``model.tokenize(prompt)`` gives :class:`Token`
rows with character offsets, and :func:`token_span` maps a word onto them (multi-token
words, the BOS token at index 0 included in the numbering).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Union

from .errors import ConditionError, ParameterError

_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
_POSSESSIVE = re.compile(r"['’][sS]\b")


@dataclass(frozen=True)
class WordSpan:
    """One occurrence of a word or phrase in a prompt.

    Args:
        text: the matched text as written in the prompt.
        start, end: character offsets, ``prompt[start:end] == text``.
        occurrence: 0-based index among the matches of the same query.
    """

    text: str
    start: int
    end: int
    occurrence: int = 0


@dataclass(frozen=True)
class Token:
    """One token of an encoded prompt.

    Args:
        index: position in the text encoder's input (BOS is 0 for CLIP tokenizers).
        text: the token string (e.g. ``"cat</w>"``).
        start, end: character offsets into the prompt; ``start == end`` for special tokens.
        special: BOS, EOS or padding.
    """

    index: int
    text: str
    start: int
    end: int
    special: bool = False


Word = Union[str, WordSpan]


def prompt_words(prompt: str) -> list[str]:
    """The words of a prompt in order: runs of letters and digits, with internal ``-`` or ``'``."""
    return _WORD.findall(prompt)


def _pattern(word: str) -> re.Pattern:
    parts = word.split()
    if not parts:
        raise ParameterError("the word to look for is empty; pass a word of the prompt")
    body = r"\s+".join(re.escape(p) for p in parts)
    left = r"(?<!\w)(?<!\w[-'’])"
    right = r"(?!\w)(?!-\w)(?!['’](?![sS]\b)\w)"
    return re.compile(left + body + right, re.IGNORECASE)


def find_words(prompt: str, word: str) -> tuple[WordSpan, ...]:
    """Every whole-word, case-insensitive occurrence of ``word`` (a word or phrase) in ``prompt``."""
    if not isinstance(prompt, str) or not isinstance(word, str):
        raise ParameterError("prompt and word must be strings")
    return tuple(WordSpan(m.group(0), m.start(), m.end(), i) for i, m in enumerate(_pattern(word).finditer(prompt)))


def find_word(prompt: str, word: Word, occurrence: int | None = None) -> WordSpan:
    """Locate ``word`` in ``prompt``; the first occurrence unless ``occurrence`` (0-based) is given.

    Args:
        prompt: the prompt.
        word: a word or phrase, or a :class:`WordSpan` (checked against the prompt and returned).
        occurrence: which match to return when the word repeats; default the first.

    Raises:
        ConditionError: the word is not in the prompt (the message lists the prompt's
            words) or has fewer occurrences than asked for.
    """
    if isinstance(word, WordSpan):
        if prompt[word.start : word.end] != word.text:
            raise ConditionError(f"the span {word.text!r} at {word.start}..{word.end} is not in the prompt {prompt!r}")
        return word
    spans = find_words(prompt, word)
    if not spans:
        raise ConditionError(
            f"{word!r} is not a word of the prompt {prompt!r}; its words are: {', '.join(prompt_words(prompt)) or '(none)'}"
        )
    if occurrence is None:
        return spans[0]
    if not 0 <= occurrence < len(spans):
        raise ConditionError(
            f"{word!r} occurs {len(spans)} time(s) in {prompt!r}; pass an occurrence from 0 to {len(spans) - 1}"
        )
    return spans[occurrence]


def _spans(prompt: str, words: Sequence[Word]) -> list[WordSpan]:
    if isinstance(words, (str, WordSpan)):
        words = [words]
    out: list[WordSpan] = []
    for w in words:
        if isinstance(w, WordSpan):
            out.append(find_word(prompt, w))
        else:
            find_word(prompt, w)  # raises with the prompt's words
            out.extend(find_words(prompt, w))
    out.sort(key=lambda s: (s.start, -s.end))
    merged: list[WordSpan] = []
    for s in out:
        if merged and s.start < merged[-1].end:
            last = merged[-1]
            if s.end > last.end:
                merged[-1] = WordSpan(prompt[last.start : s.end], last.start, s.end, last.occurrence)
            continue
        merged.append(s)
    return merged


def tidy(prompt: str) -> str:
    """Clean spacing and punctuation left behind by removals.

    Collapses whitespace, removes spaces before ``, . ; : ! ?``, repeated commas, a comma
    before other punctuation, empty brackets and quotes, and stray separators at either end.
    """
    s = re.sub(r"\s+", " ", prompt)
    s = re.sub(r"\(\s*\)|\[\s*\]|\"\s*\"", " ", s)
    s = re.sub(r"\s+([,.;:!?)\]])", r"\1", s)
    s = re.sub(r"([(\[])\s+", r"\1", s)
    s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)
    s = re.sub(r"[,;:]\s*([.!?])", r"\1", s)
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"^[\s,;:.!?]+", "", s)
    s = re.sub(r"[\s,;:]+$", "", s)
    return s.strip()


def remove_words(prompt: str, words: Sequence[Word]) -> str:
    """The prompt without ``words`` (every occurrence of each string; a :class:`WordSpan` only itself).

    A possessive ``'s`` after a removed word goes with it.

    >>> remove_words("a cat, a dog and a red car.", ["a dog"])
    'a cat, and a red car.'

    Raises:
        ConditionError: a word is not in the prompt.
    """
    spans = _spans(prompt, words)
    out, pos = [], 0
    for s in spans:
        out.append(prompt[pos : s.start])
        out.append(" ")
        possessive = _POSSESSIVE.match(prompt, s.end)
        pos = possessive.end() if possessive else s.end
    out.append(prompt[pos:])
    return tidy("".join(out))


def keep_words(prompt: str, words: Sequence[Word]) -> str:
    """Only ``words``, as written in the prompt, in prompt order, joined by spaces.

    >>> keep_words("A dog chasing a red cat", ["cat", "dog"])
    'dog cat'

    A repeated word is kept once (its first occurrence, unless a :class:`WordSpan` is given).
    """
    if isinstance(words, (str, WordSpan)):
        words = [words]
    spans = [find_word(prompt, w) for w in words]
    spans.sort(key=lambda s: s.start)
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise ConditionError(f"{a.text!r} and {b.text!r} overlap in {prompt!r}; choose separate words")
    return " ".join(re.sub(r"\s+", " ", s.text) for s in spans)


def replace_word(prompt: str, word: Word, new: str) -> str:
    """Replace ``word`` by ``new`` (every occurrence of a string; a :class:`WordSpan` only itself).

    An empty ``new`` is :func:`remove_words`.
    """
    if not new.strip():
        return remove_words(prompt, [word])
    spans = _spans(prompt, [word])
    out, pos = [], 0
    for s in spans:
        out.append(prompt[pos : s.start])
        out.append(new)
        pos = s.end
    out.append(prompt[pos:])
    return tidy("".join(out))


def tokens_of(prompt: str, tokenizer) -> tuple[Token, ...]:
    """The tokens of ``prompt`` under a Hugging Face (fast) tokenizer, with character offsets.

    Special tokens (BOS, EOS, padding) are flagged; an unknown-word token is not special.
    """
    enc = tokenizer(prompt, return_offsets_mapping=True, truncation=False)
    ids = list(enc["input_ids"])
    special = set(tokenizer.all_special_ids)
    unk = tokenizer.unk_token_id
    if unk not in {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}:
        special.discard(unk)  # an unknown word is a word, not a special token
    names = tokenizer.convert_ids_to_tokens(ids)
    return tuple(Token(i, n, int(s), int(e), t in special or s == e)
                 for i, (t, n, (s, e)) in enumerate(zip(ids, names, enc["offset_mapping"])))


def token_span(prompt: str, word: Word, tokens, occurrence: int | None = None) -> tuple[int, ...]:
    """Token indices of ``word`` in the encoded ``prompt``.

    Args:
        prompt: the prompt.
        word: a word or phrase, or a :class:`WordSpan`.
        tokens: the prompt's :class:`Token` rows, a Hugging Face fast tokenizer, or a model
            with ``tokenize(prompt)`` (such as :class:`~diffpid.models.diffusers.DiffusersModel`).
        occurrence: which occurrence of a repeated word (default the first).

    Returns:
        The indices (positions in the encoder input, BOS included in the numbering) of
        every non-special token that overlaps the word's characters, ascending.

    Raises:
        ConditionError: the word is not in the prompt, or was cut off by truncation.
    """
    span = find_word(prompt, word, occurrence)
    if hasattr(tokens, "convert_ids_to_tokens"):
        tokens = tokens_of(prompt, tokens)
    elif hasattr(tokens, "tokenize"):
        tokens = tokens.tokenize(prompt)
    idx = tuple(t.index for t in tokens if not t.special and t.start < span.end and t.end > span.start)
    if not idx:
        raise ConditionError(f"{span.text!r} has no tokens in the encoded prompt (cut off at the length limit?)")
    return idx


@dataclass(frozen=True)
class PIDPrompts:
    """The four prompts of a (conditional) PID of two sources, in engine order.

    Args:
        source_1, source_2: the two words as written in the prompt.
        neither: ``""`` for PID; the prompt without both words for CPID.
        first: with ``source_1`` only (PID: the word; CPID: the prompt without ``source_2``).
        second: with ``source_2`` only.
        both: ``"y1 y2"`` in prompt order (or the full prompt) for PID; the full prompt for CPID.
        conditional: CPID (True) or PID (False).
    """

    source_1: str
    source_2: str
    neither: str
    first: str
    second: str
    both: str
    conditional: bool

    @property
    def prompts(self) -> tuple[str, str, str, str]:
        """``(neither, first, second, both)``."""
        return (self.neither, self.first, self.second, self.both)


def _two(prompt: str, y1: Word, y2: Word) -> tuple[WordSpan, WordSpan]:
    s1, s2 = find_word(prompt, y1), find_word(prompt, y2)
    if s1.start < s2.end and s2.start < s1.end:
        raise ConditionError(f"the sources {s1.text!r} and {s2.text!r} overlap in {prompt!r}; choose separate words")
    return s1, s2


def pid_prompts(prompt: str, y1: Word, y2: Word, full_prompt: bool = False) -> PIDPrompts:
    """PID prompts ``""``, ``y1``, ``y2``, ``"y1 y2"`` (prompt order; the prompt itself if ``full_prompt``)."""
    s1, s2 = _two(prompt, y1, y2)
    both = prompt if full_prompt else keep_words(prompt, [s1, s2])
    return PIDPrompts(s1.text, s2.text, "", keep_words(prompt, [s1]), keep_words(prompt, [s2]), both, False)


def cpid_prompts(prompt: str, y1: Word, y2: Word) -> PIDPrompts:
    """CPID prompts: without both words, without ``y2``, without ``y1``, the full prompt."""
    s1, s2 = _two(prompt, y1, y2)
    return PIDPrompts(
        s1.text, s2.text, remove_words(prompt, [y1, y2]), remove_words(prompt, [y2]),
        remove_words(prompt, [y1]), prompt, True,
    )
