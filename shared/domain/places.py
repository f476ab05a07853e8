"""The place names of an address line, for telling two homes apart. Pure.

Address lines of one person differ in form from one legacy system to another ("Dsn. Tegalrejo RT 1/RW 10,
Ds. Margoagung", "Dusun Tegalrejo, Margoagung, Kec. Seyegan", "TEGALREJO 01/10 MARGOAGUNG"), so a keyed
token of the whole line rarely matches; the place names (hamlet, village, street) they carry do. The
first is the most specific (the hamlet or street, before the village): two records whose first places
each miss from the other's line state two different homes, even in one village.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NON_WORD = re.compile(r"[^0-9a-z]+")
# The generic words of Indonesian address lines (and their abbreviations): what is left are place names
# (street, hamlet, village). After a marker of a wider area (kecamatan, kabupaten, ...) its name is left out
# too: everyone of the kecamatan shares it, so it says nothing about a home.
_ADDRESS_WORDS = frozenset({"dusun", "dsn", "desa", "ds", "kelurahan", "kel", "jalan", "jl", "jln", "gang", "gg",
                            "rt", "rw", "nomor", "no", "blok", "perum", "perumahan", "komplek", "kompleks",
                            "dukuh", "kampung", "kp", "dan"})
_WIDER_AREA = frozenset({"kecamatan", "kec", "kabupaten", "kab", "kota", "provinsi", "prov"})


def place_words(line: str) -> list[str]:
    """The place names of one address line in order ("Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung" ->
    tegalrejo, margoagung): words of three letters or more, neither generic nor a number nor a wider
    area's name."""
    words, places, skip = _NON_WORD.sub(" ", (line or "").lower()).split(), [], False
    for word in words:
        if word in _WIDER_AREA:
            skip = True
            continue
        if not skip and word.isalpha() and len(word) >= 3 and word not in _ADDRESS_WORDS and word not in places:
            places.append(word)
        skip = False
    return places


# A place name of fewer letters is compared exactly: one letter apart, short words are other places
# ("Sari"/"Sawi", "Kali"/"Bali"); from five letters a one-letter difference is a typo far more often.
TYPO_TOLERANT_LENGTH = 5


def typo_variants(word: str) -> set[str]:
    """The word and, from ``TYPO_TOLERANT_LENGTH`` letters, each form of it with one letter deleted: two
    words one typo apart (a letter changed, added, dropped, or two neighbours swapped) share one of them,
    so keyed tokens of the variants compare homes typo-tolerantly without keeping a place name in clear
    ("Tegalrejo"/"Tegalrjeo"/"Tegalreja" all hold "tegalrej"). Symmetric deletion, as SymSpell does."""
    if len(word) < TYPO_TOLERANT_LENGTH:
        return {word}
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


HOME_PHRASE_LENGTH = 24   # letters of the first line's place names kept for the typo-tolerant comparison


def home_forms(places: list[str], lines: object) -> tuple[str, ...]:
    """The forms of a home compared typo-tolerantly (``typo_variants``): its first place name, and the
    place names of the address's first line written without spaces (cut to ``HOME_PHRASE_LENGTH``
    letters), so a lost or added space ("Langdon Avenue" / "Langdonavenue", "Boron ia Drive") is no
    other home."""
    first = next((line for line in lines if isinstance(line, str)), "") if isinstance(lines, list) else ""
    # Short pieces count here ("Boron ia"): a word cut in two leaves one.
    words = _NON_WORD.sub(" ", first.lower()).split()
    words = words[:next((i for i, word in enumerate(words) if word in _WIDER_AREA), len(words))]
    phrase = "".join(word for word in words if word.isalpha() and word not in _ADDRESS_WORDS)[:HOME_PHRASE_LENGTH]
    return tuple(dict.fromkeys(form for form in (places[0] if places else "", phrase) if form))


# Comparisons of two index records (``shared.domain.patient.member_record``) by their keyed place tokens.

def _places(member: Mapping) -> set[str]:
    return set(member.get("places") or ())


def same_home(a: Mapping, b: Mapping) -> bool:
    """The most specific place of one record's address (its hamlet or street) is named by the other's, or
    the two homes are one typo apart (``places.typo_variants``: legacy addresses carry typos)."""
    return bool(a.get("home") and a["home"] in _places(b) or b.get("home") and b["home"] in _places(a)
                or set(a.get("home_variants") or ()) & set(b.get("home_variants") or ()))


def homes_conflict(a: Mapping, b: Mapping) -> bool:
    """Both records state a home, and neither's hamlet or street is named by the other's address: two
    homes, even in one village (``shared.domain.places``)."""
    return bool(a.get("home") and b.get("home")) and not same_home(a, b)


# Hamlet and village at least: a hamlet's name alone repeats from village to village ("Jetis", "Sawahan").
ONE_ADDRESS_MIN_PLACES = 2


def one_address(a: Mapping, b: Mapping) -> bool:
    """Every place name of one record's address is named by the other's, and each names at least
    ``ONE_ADDRESS_MIN_PLACES`` (hamlet and village, or street and kelurahan): one address written in two
    systems' forms ("Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung" / "TEGALREJO 01/10 MARGOAGUNG"), which the
    keyed address line cannot see."""
    places_a, places_b = _places(a), _places(b)
    return (len(places_a) >= ONE_ADDRESS_MIN_PLACES and len(places_b) >= ONE_ADDRESS_MIN_PLACES
            and (places_a <= places_b or places_b <= places_a))
