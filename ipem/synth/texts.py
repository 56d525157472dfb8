"""Random English text for the synthetic corpus: a small grammar of sentence templates."""
from __future__ import annotations

import numpy as np

_W = {
    "adj": (
        "small big old new red green blue bright quiet heavy warm cold quick "
        "slow happy busy empty open dark clean simple strong gentle narrow "
        "wooden silver golden famous yellow early late"
    ).split(),
    "noun": (
        "dog cat car house garden window table letter river city teacher doctor "
        "farmer bottle basket ticket market station bridge engine picture "
        "student kitchen wagon rabbit island forest ladder jacket camera"
    ).split(),
    "nouns": (
        "apples books chairs boxes flowers coins stones papers letters tickets "
        "oranges pencils candles horses boats shirts cups plates lamps keys"
    ).split(),
    "past": (
        "found painted carried opened cleaned watched moved bought sold fixed "
        "visited followed pushed pulled counted washed packed checked "
        "described noticed"
    ).split(),
    "base": (
        "find paint carry open clean watch move buy sell fix visit follow "
        "push pull count wash pack check describe notice"
    ).split(),
    "prep": "near behind under beside across inside outside above".split(),
    "place": (
        "hill road school office harbour village corner museum library "
        "airport bakery theatre hospital valley"
    ).split(),
    "name": (
        "John Mary Peter Susan Robert Linda David Karen Thomas Alice Michael "
        "Helen George Emma Frank Laura"
    ).split(),
    "num": "two three four five six seven eight nine ten twelve twenty".split(),
    "time": [
        "yesterday", "today", "tomorrow", "tonight", "last week", "next month",
        "every morning", "on Monday", "on Friday", "in the evening", "after lunch",
        "before dinner",
    ],
}

# Sentence templates; {x} slots are filled from _W.
_TEMPLATES = (
    "The {adj} {noun} {past} it.",
    "{name} {past} the {noun}.",
    "{name} {past} {num} {nouns} {time}.",
    "The {adj} {noun} {past} the {adj} {noun} {prep} the {place}.",
    "Please {base} the {noun} {prep} the {place} {time}.",
    "Did you {base} the {adj} {noun} {prep} the {place}?",
    "We will {base} {num} {adj} {nouns} and then {base} the {noun}.",
    "{name} and {name} {past} a {adj} {noun} {prep} the old {place}.",
    "I think the {noun} is {prep} the {adj} {place} {time}.",
    "Nobody {past} the {noun} {time}, so {name} {past} it again.",
    "There were {num} {adj} {nouns} {prep} the {place}.",
    "Can you tell me where the {adj} {place} is?",
)
# nominal length in words (a multi-word {time} slot makes it a bit longer)
_TEMPLATE_LEN = tuple(len(t.split()) for t in _TEMPLATES)


def _fill(template: str, rng: np.random.Generator) -> str:
    out = []
    i = 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        k = template.index("}", j)
        out.append(template[i:j])
        words = _W[template[j + 1:k]]
        out.append(words[int(rng.integers(len(words)))])
        i = k + 1
    s = "".join(out)
    return s[0].upper() + s[1:]


def random_text(rng: np.random.Generator, n_words: int) -> str:
    """Random English text of about ``n_words`` words from a small grammar.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (the text is a deterministic function of it).
    n_words : int
        Target length; sentences are appended until it is reached, so the
        result can be a few words longer.

    Returns
    -------
    str
        One or more sentences.
    """
    if n_words < 1:
        raise ValueError(f"n_words must be >= 1, got {n_words}")
    sentences: list[str] = []
    count = 0
    while count < n_words:
        remaining = n_words - count
        fits = [i for i, n in enumerate(_TEMPLATE_LEN) if n <= remaining + 2]
        if not fits:
            shortest = min(_TEMPLATE_LEN)
            fits = [i for i, n in enumerate(_TEMPLATE_LEN) if n == shortest]
        s = _fill(_TEMPLATES[fits[int(rng.integers(len(fits)))]], rng)
        sentences.append(s)
        count += len(s.split())
    return " ".join(sentences)
