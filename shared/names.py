"""Indonesian personal names: normalise, compare, and read from a FHIR Patient. Pure.

Normalising removes what varies between records of one person and says nothing about who they are:
case, accents, punctuation, honorifics and academic titles, baby-name boilerplate, and spelling
variants (old Dutch-era spelling, common transliterations of Arabic names). The tables below are the
whole policy; ``tools/calibration/calibrate_names.py`` measures it on ``tests/data/name_pairs.csv``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz

# --- titles ---------------------------------------------------------------------------------
# Written the usual way; matched on the letters only, so "S.Kom", "S. Kom", "SKom" and "s.kom." agree.
# Honorifics and prefix titles are removed only at the start of a name (several in a row are common:
# "Ny. Hj. Dra. Siti"), degrees only at the end or after a comma.
PREFIX_TITLES = (
    "Tn.", "Tuan", "Ny.", "Nyonya", "Nn.", "Nona", "Sdr.", "Sdri.", "Saudara", "Saudari", "Bpk.", "Bapak",
    "Ibu", "Bu", "Pak", "H.", "Hj.", "Haji", "Hajjah", "K.H.", "Ust.", "Ustadz", "Ustazah", "dr.", "drg.",
    "Drs.", "Dra.", "Ir.", "Prof.", "Ns.", "Bd.", "apt.", "Alm.", "Almh.", "Mr.", "Mrs.", "Ms.",
)
SUFFIX_TITLES = (
    "S.Kom", "S.Pd", "S.Pd.I", "S.E.", "S.H.", "S.H.I", "S.Ag", "S.Sos", "S.IP", "S.Si", "S.T.", "S.Psi",
    "S.Ked", "S.Kep", "S.Farm", "S.Gz", "S.Tr.Keb", "S.Keb", "S.Kes", "S.ST", "S.P.", "SKM", "M.Kes",
    "M.Farm",
    "M.M.", "M.Pd", "M.Si", "M.T.", "M.H.", "M.Kom", "M.Ag", "MBA", "M.Sc", "B.Sc", "Ph.D", "M.A.", "Amd",
    "A.Md", "Amd.Keb", "A.Md.Keb", "Amd.Kep", "A.Md.Kep", "Amd.Kes", "A.Md.Kes", "AMK", "Sp.OG", "Sp.PD",
    "Sp.A", "Sp.B", "Sp.JP", "Sp.M", "Sp.THT", "Sp.KK", "Sp.S", "Sp.An", "Sp.Rad", "Ners", "Apt",
)
# Too short or too name-like to remove unless written with a dot ("An." = anak, but "An Nisa").
DOTTED_ONLY_TITLES = frozenset({"an", "ma", "si", "st", "sp"})
PREFIX_TITLES_EXTRA_DOTTED = ("An.",)
BABY_WORDS = frozenset({"by", "bayi", "bby", "baby"})
BABY_MOTHER_WORDS = frozenset({"ny", "nyonya", "ibu", "bu", "dari", "nn", "sdri", "an"})
BABY_SEX_WORDS = {"laki": "l", "lk": "l", "l": "l", "perempuan": "p", "pr": "p", "p": "p"}
ROMAN_ORDER = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}
TWIN_WORDS = frozenset({"kembar", "twin"})
BALINESE_MARKERS = frozenset({"i", "ni"})  # "I Made", "Ni Luh": sex markers, often left out
BALINESE_NAME_WORDS = frozenset({"wayan", "putu", "gede", "made", "kadek", "nengah", "nyoman", "komang",
                                 "ketut", "luh", "gusti", "ayu", "kompyang"})
# "Abdurrahman" = "Abdul Rahman": the Arabic article assimilates to a following r, s, n, z, d or t.
ABDUL_ASSIMILATED = re.compile(r"^abd(?:ul|u)?([rsnzdt])\1?([aeiou][a-z]{2,})$")

# --- spelling ---------------------------------------------------------------------------------
# Old (pre-1972) spelling letters that never occur in current spelling: a token holding one is written
# the old way, so its other "j" is a current "y" ("Soejono" = "Suyono"). This is decided per token:
# current given names beside an old-spelled family name are common ("Joko Soesilo"). A bare "j" is left
# alone: in current spelling "Juli" and "Yuli" are different names; the scorer treats j/y as close
# (``J_FOR_Y_SIMILARITY``), which sends "Hajati" / "Hayati" to review rather than auto-merge.
OLD_SPELLING_MARKERS = ("oe", "dj", "tj", "sj")
# Applied in order to every token (after the old-spelling step); both sides of a comparison get the same.
SPELLING_RULES = (
    (r"ch", "kh"),   # Achmad, Chairul (Arabic kh written ch)
    (r"kh", "h"),    # Khairul / Hairul, Akhmad / Ahmad
    (r"sy", "s"),    # Syaiful / Saiful, Syamsul / Samsul
    (r"dh", "d"),    # Ramadhan / Ramadan, Widhi / Widi
    (r"th", "t"),    # Fathimah / Fatimah
    (r"q", "k"),     # Rizqi / Rizki, Iqbal / Ikbal
    (r"ae", "ai"),   # Zaenal / Zainal
    (r"(.)\1+", r"\1"),  # doubled letters: Muhammad / Muhamad, Sitti / Siti, Ferry / Fery
    (r"(?<=[^aeiou])y$", "i"),  # final y: Sity / Siti, Rudy / Rudi
    (r"(?<=[^aeiou])ie$", "i"),  # final Dutch-era ie: Wahyunie / Wahyuni, Rudie / Rudi, Swie / Swi
)
# Whole-token variants the rules do not reach, written naturally: variant -> canonical form.
NAME_VARIANTS = {
    "muhammad": ("muhammad", "muhamad", "mohammad", "mohamad", "mohammed", "muhammed", "mochammad",
                 "mochamad", "muchammad", "muchamad", "mukhammad", "moehammad", "mohamed", "muhamed",
                 "moh", "moch", "mochd", "muh", "much", "mhd", "mohd", "mukhamad"),
    "ahmad": ("ahmad", "ahmat", "achmat", "ahmed", "akhmat"),
    "abdul": ("abdul", "abd", "abdoel"),
    "yusuf": ("yusuf", "yusup", "jusuf", "jusup", "yusup"),
    "yahya": ("yahya", "jahja", "yahja"),
    "yakub": ("yakub", "jakub", "yaqub"),
    "hidayat": ("hidayat", "hidajat"),
    "wahyu": ("wahyu", "wahju"),
    "wahyudi": ("wahyudi", "wahjudi"),
    "khairul": ("khairul", "khoirul", "choirul", "chairul"),
    "candra": ("candra", "chandra", "tjandra"),
    "fitri": ("fitri", "pitri"),
    "fatimah": ("fatimah", "patimah", "fatimah"),
    "arif": ("arif", "arip"),
    "rizki": ("rizki", "rezki", "riski", "rizqy"),
    "nyoman": ("nyoman", "njoman"),
    "ketut": ("ketut", "ktut"),
    "putri": ("putri", "puteri"),
    "putra": ("putra", "putera"),
    "slamet": ("slamet", "selamet"),
    "lim": ("lim", "liem"),
    "kurniawan": ("kurniawan", "kurniawan"),
}
MUHAMMAD_INITIAL = "m"  # "M. Yusuf": a leading single M stands for Muhammad


@dataclass(frozen=True)
class NormalisedName:
    text: str
    tokens: tuple[str, ...]
    is_baby: bool
    mother: str | None


def _letters(title: str) -> str:
    return re.sub(r"[^a-z]", "", title.lower())


def _is_old_spelling(token: str) -> bool:
    return any(marker in token for marker in OLD_SPELLING_MARKERS)


def _respell(token: str) -> str:
    """Token in current spelling (see ``OLD_SPELLING_MARKERS`` and ``SPELLING_RULES``)."""
    if _is_old_spelling(token):
        token = token.replace("dj", "\0").replace("tj", "c").replace("sj", "sy").replace("oe", "u")
        token = token.replace("j", "y").replace("\0", "j")
    for pattern, replacement in SPELLING_RULES:
        token = re.sub(pattern, replacement, token)
    return token


_VARIANT_LOOKUP = {_respell(variant): _respell(canonical)
                   for canonical, variants in NAME_VARIANTS.items() for variant in variants}
_BALINESE_NAME_TOKENS = frozenset(_VARIANT_LOOKUP.get(_respell(w), _respell(w)) for w in BALINESE_NAME_WORDS)
_PREFIX_ANY = frozenset(_letters(t) for t in PREFIX_TITLES) - DOTTED_ONLY_TITLES
_PREFIX_DOTTED = frozenset(_letters(t) for t in PREFIX_TITLES + PREFIX_TITLES_EXTRA_DOTTED)
_SUFFIX_ANY = frozenset(_letters(t) for t in SUFFIX_TITLES) - DOTTED_ONLY_TITLES
_SUFFIX_DOTTED = frozenset(_letters(t) for t in SUFFIX_TITLES)
_MAX_TITLE_PIECES = 4
# Titles written in several parts ("S.Kom", "K.H."): only these may match several pieces, so
# "H. Aji" stays the title "H." and the name "Aji", never the one-word title "Haji".
_MULTI_PART_TITLES = frozenset(_letters(t) for t in (*PREFIX_TITLES, *SUFFIX_TITLES)
                               if len(re.findall(r"[a-z]+", t.lower())) > 1)


def canonical_token(token: str) -> str:
    respelled = _respell(token)
    return _VARIANT_LOOKUP.get(respelled, respelled)


@dataclass(frozen=True)
class _Piece:
    text: str
    dotted: bool  # written with a dot right after it: "H." vs "H"
    after_comma: bool = False  # "Ratna, Drs.": what follows a comma may be any title


def _pieces(raw: str) -> list[_Piece]:
    text = unicodedata.normalize("NFKD", raw)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"['`\u2018\u2019\u02bc]", "", text)  # Ma'ruf = Maruf
    pieces = []
    first_comma = text.find(",")
    for match in re.finditer(r"([a-z0-9]+)(\s*\.)?", text):
        pieces.append(_Piece(match.group(1), match.group(2) is not None, 0 <= first_comma < match.start()))
    return pieces


def _title_run(pieces: list[_Piece], any_titles: frozenset, dotted_titles: frozenset, *,
               from_end: bool) -> int:
    """How many pieces at the start (or end) form one title; 0 if none. At the end, after a comma,
    a prefix title counts too: some systems write "Ratna, Drs." (name first, titles after)."""
    for size in range(min(_MAX_TITLE_PIECES, len(pieces)), 0, -1):
        run = pieces[-size:] if from_end else pieces[:size]
        letters = "".join(p.text for p in run)
        if size > 1 and letters not in _MULTI_PART_TITLES:
            continue
        dotted = any(p.dotted for p in run)
        if letters in any_titles or (letters in dotted_titles and dotted):
            return size
        if from_end and all(p.after_comma for p in run) and (
                letters in _PREFIX_ANY or (letters in _PREFIX_DOTTED and dotted)):
            return size
    return 0


def _strip_titles(pieces: list[_Piece]) -> list[_Piece]:
    pieces = list(pieces)
    while len(pieces) > 1 and (n := _title_run(pieces, _PREFIX_ANY, _PREFIX_DOTTED, from_end=False)):
        if n >= len(pieces):
            break
        pieces = pieces[n:]
    while len(pieces) > 1 and (n := _title_run(pieces, _SUFFIX_ANY, _SUFFIX_DOTTED, from_end=True)):
        if n >= len(pieces):
            break
        pieces = pieces[:-n]
    return pieces


def _canonical_tokens(pieces: list[_Piece]) -> list[str]:
    tokens = [p.text for p in pieces]
    # "I"/"Ni" before a Balinese name word are sex markers, often left out or moved by order swaps.
    tokens = [t for i, t in enumerate(tokens)
              if not (t in BALINESE_MARKERS and i + 1 < len(tokens)
                      and canonical_token(tokens[i + 1]) in _BALINESE_NAME_TOKENS)]
    out = []
    for position, token in enumerate(tokens):
        if token == MUHAMMAD_INITIAL and position == 0 and len(tokens) > 1:
            token = "muhammad"
        if token.isdigit():
            out.append(str(int(token)))
            continue
        token = ABDUL_ASSIMILATED.sub(r"abdul \1\2", token)
        out.extend(canonical_token(part) for part in token.split())
    return out


def _birth_markers(pieces: list[_Piece]) -> tuple[list[_Piece], list[str]]:
    """Split twin order ("1", "II", "kembar 2") and sex words off a baby name's remaining pieces."""
    kept, markers = [], []
    for index, piece in enumerate(pieces):
        text = piece.text
        at_edge = index == 0 or index == len(pieces) - 1
        if text.isdigit():
            markers.append(str(int(text)))
        elif text in TWIN_WORDS:
            continue
        elif text in BABY_SEX_WORDS and (len(text) > 1 or at_edge):
            markers.append(BABY_SEX_WORDS[text])
        elif text in ROMAN_ORDER and at_edge and len(pieces) > 1:
            markers.append(ROMAN_ORDER[text])
        else:
            kept.append(piece)
    # "laki laki" written with a space or hyphen gives two sex words; keep one.
    deduped = []
    for marker in markers:
        if marker not in deduped:
            deduped.append(marker)
    return kept, sorted(deduped)


def _strip_leading_titles(pieces: list[_Piece]) -> list[_Piece]:
    while pieces and (n := _title_run(pieces, _PREFIX_ANY, _PREFIX_DOTTED, from_end=False)):
        pieces = pieces[n:]
    return pieces


# Longest name read, in characters. Scoring pairs every token of one name with every token of the
# other (quadratic): two 10,000-character names took 16.7 s inside a group transaction. Real names
# (with titles and degrees) stay far below 200 characters; only the first 200 are compared.
MAX_NAME_CHARS = 200


def normalise_name(raw: str) -> NormalisedName:
    """Comparable form of a name as written in any legacy system (see module doc); only its first
    ``MAX_NAME_CHARS`` characters count."""
    if not isinstance(raw, str):
        return NormalisedName("", (), False, None)
    return _normalise(raw[:MAX_NAME_CHARS])


@lru_cache(maxsize=65536)
def _normalise(raw: str) -> NormalisedName:
    pieces = _strip_leading_titles(_pieces(raw)) or _pieces(raw)
    if pieces and pieces[0].text in BABY_WORDS and len(pieces) > 1:
        rest = pieces[1:]
        rest, markers = _birth_markers(rest)
        while rest and rest[0].text in BABY_MOTHER_WORDS | _PREFIX_ANY | _PREFIX_DOTTED:
            rest = rest[1:]
        mother_tokens = _canonical_tokens(_strip_titles(rest)) if rest else []
        mother = " ".join(mother_tokens) or None
        tokens = ("bayi", *mother_tokens, *markers)
        return NormalisedName(" ".join(tokens), tokens, True, mother)
    tokens = tuple(_canonical_tokens(_strip_titles(pieces)))
    return NormalisedName(" ".join(tokens), tokens, False, None)


# --- comparison -------------------------------------------------------------------------------
INITIAL_SIMILARITY = 0.8     # "S." against "Santoso"
J_FOR_Y_SIMILARITY = 0.9
# "y" between a consonant and a vowel is written "i" as often ("Setyawan" / "Setiawan", "Suryani" /
# "Suriani"). Compared both ways (not rewritten) so a typo near a "y" keeps its usual score.
_Y_AS_I = re.compile(r"(?<=[^aeiouy])y(?=[aeiou])")
MIN_TOKEN_SIMILARITY = 0.5   # below this two tokens are not a pair at all
# Respelling can change a first letter ("C." for Chaniago -> haniago, "D." for Djoko -> joko), so an
# initial also stands for the letters the rules turn it into.
INITIAL_ALIASES = {"c": "ch", "k": "kh", "d": "dj", "t": "tc", "j": "jy", "q": "k", "s": "s"}


def token_similarity(a: str, b: str) -> float:
    """0..1 similarity of two canonical tokens; initials match the tokens they can stand for."""
    if a == b:
        return 1.0
    if a.isdigit() or b.isdigit():
        return 0.0
    if len(a) == 1 or len(b) == 1:
        initial, other = (a, b) if len(a) == 1 else (b, a)
        return INITIAL_SIMILARITY if other[0] in INITIAL_ALIASES.get(initial, initial) else 0.0
    similarity = fuzz.ratio(a, b) / 100.0
    if "y" in a or "y" in b:
        similarity = max(similarity, fuzz.ratio(_Y_AS_I.sub("i", a), _Y_AS_I.sub("i", b)) / 100.0)
    if "j" in a or "j" in b:
        # Old "j" is current "y" ("Hajati" / "Hayati"), but "Juli" and "Yuli" are two names: close, not equal.
        as_y = fuzz.ratio(a.replace("j", "y"), b.replace("j", "y")) / 100.0
        similarity = max(similarity, J_FOR_Y_SIMILARITY * as_y)
    return similarity if similarity >= MIN_TOKEN_SIMILARITY else 0.0


_DOUBLED = re.compile(r"(.)\1+")


def aligned_token_score(a: tuple[str, ...], b: tuple[str, ...], similarity=token_similarity) -> float:
    """0..100: pairs tokens one-to-one (best first, order ignored), then averages two views.

    The symmetric view (matched weight over all tokens) penalises tokens only one side has; the
    coverage view (over the shorter name) forgives a missing middle name. A name written without
    spaces ("Nurhayati" / "Nur Hayati") is compared as one string as well.
    """
    if not a or not b:
        return 0.0
    pairs = sorted(((similarity(x, y), i, j) for i, x in enumerate(a) for j, y in enumerate(b)), reverse=True)
    used_a, used_b, matched = set(), set(), 0.0
    for score, i, j in pairs:
        if score <= 0.0 or i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched += score
    symmetric = 2 * matched / (len(a) + len(b))
    coverage = matched / min(len(a), len(b))
    score = 100.0 * (symmetric + coverage) / 2
    if len(a) != len(b):
        joined_a, joined_b = (_DOUBLED.sub(r"\1", "".join(tokens)) for tokens in (a, b))
        score = max(score, fuzz.ratio(joined_a, joined_b))
    return score


def _baby_parts(name: NormalisedName) -> tuple[tuple[str, ...], tuple[str, ...]]:
    mother_len = len(name.mother.split()) if name.mother else 0
    return name.tokens[1:1 + mother_len], name.tokens[1 + mother_len:]


def name_similarity(a: str, b: str) -> float:
    """0..100 similarity of two names as written; the calibrated scorer (README, "Name matching").

    A baby's generic name ("By. Ny. Sari") never resembles an adult's name (the mother's, above all),
    and twins whose order markers differ ("Bayi 1" / "Bayi 2") score 0.
    """
    first, second = normalise_name(a), normalise_name(b)  # each capped at MAX_NAME_CHARS
    if first.is_baby != second.is_baby:
        return 0.0
    if first.is_baby:
        (mother_a, markers_a), (mother_b, markers_b) = _baby_parts(first), _baby_parts(second)
        if markers_a and markers_b and markers_a != markers_b:
            return 0.0
        return aligned_token_score(mother_a + markers_a, mother_b + markers_b)
    return aligned_token_score(first.tokens, second.tokens)


# --- FHIR -------------------------------------------------------------------------------------
def _pick_human_name(names: list) -> dict | None:
    names = [n for n in names if isinstance(n, dict)]
    for use in ("official", "usual"):
        for name in names:
            if name.get("use") == use:
                return name
    return names[0] if names else None


def patient_name(patient: dict) -> str:
    """Display text of a Patient's name: the official HumanName (else usual, else first); "" if none.

    ``text`` wins when present; otherwise given names and family are joined (prefixes and suffixes
    left out, they are titles).
    """
    names = patient.get("name") if isinstance(patient, dict) else None
    name = _pick_human_name(names if isinstance(names, list) else [])
    if name is None:
        return ""
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        return " ".join(text.split())
    given = name.get("given")
    parts = [g for g in given if isinstance(g, str)] if isinstance(given, list) else []
    if isinstance(name.get("family"), str):
        parts.append(name["family"])
    return " ".join(" ".join(parts).split())
