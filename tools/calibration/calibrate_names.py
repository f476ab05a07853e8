"""Name-scorer calibration: build the labelled pair set and measure candidate scorers on it.

    python -m tools.calibration.calibrate_names generate   # (re)writes tests/data/name_pairs.csv, seeded
    python -m tools.calibration.calibrate_names evaluate   # prints the scorer table (README, "Name matching")

The pair set is synthetic and labelled by construction: "same" pairs are one person's name passed
through a transformation seen in legacy data (titles, caps, order, spelling, typos, dropped middle
name, initials, mononym, joined tokens); "different" pairs are two people with similar names
(siblings sharing a family/clan/generation name, a shared common first name, one extra token, real
names one letter apart). Its hand-picked hard cases are listed in ``CONFUSABLE_NAMES`` and below.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer
from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler

from shared.names import aligned_token_score, name_similarity, normalise_name

PAIRS_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "name_pairs.csv"
SEED = 20240611

# People by naming tradition: (given names..., family/clan/father-derived name or None).
PEOPLE = {
    "javanese": ["Budi Santoso", "Sri Wahyuni", "Agus Setiawan", "Dwi Prasetyo", "Eko Purnomo", "Sutrisno",
                 "Sumarni", "Joko Susilo", "Tri Handayani", "Bambang Hartono", "Endang Lestari",
                 "Wahyu Nugroho", "Suparman", "Yuliana Rahayu", "Heru Cahyono", "Sugeng Riyadi"],
    "sundanese": ["Asep Saepudin", "Dede Kurniasih", "Ujang Sopandi", "Neneng Hasanah", "Cecep Hidayat",
                  "Euis Komariah", "Iwan Ridwan", "Yayat Supriatna", "Entin Kartini", "Dadang Suherman"],
    "batak": ["Rudolf Simanjuntak", "Maria Hutapea", "Togar Sitompul", "Rosmawati Nainggolan",
              "Hotman Siregar", "Lamhot Panjaitan", "Sondang Manurung", "Parlindungan Lubis"],
    "minang": ["Rahmat Hidayat", "Yulia Fitri", "Zulkifli Anwar", "Rina Marlina", "Fadli Zainal",
               "Nurhayati Syamsuddin", "Afrizal Chaniago", "Desi Ratnasari"],
    "bugis": ["Andi Baso Amir", "Andi Tenri Ajeng", "Muhammad Arfah", "Hasnah Daeng Ngai",
              "Syamsul Alam", "Sitti Rahmawati", "Abdul Haris Paturusi", "Nurul Fadillah"],
    "balinese": ["I Wayan Sudarsana", "Ni Made Sukerti", "I Nyoman Suarjana", "Ni Ketut Ariani",
                 "I Gede Mahendra", "Ni Putu Ayu Lestari", "I Komang Adi Putra", "Ni Luh Sri Wahyuni"],
    "chinese": ["Lim Swie Hong", "Tan Hok Liang", "Liem Giok Nio", "Budi Gunawan Tanoto", "Hendra Wijaya",
                "Susanti Halim", "Kwee Lan Fang", "Wong Siu Ling", "Tjoa Bun Kiat", "Linda Kurniawan"],
    "arabic": ["Muhammad Yusuf", "Siti Aminah", "Ahmad Fauzi", "Abdul Rahman", "Siti Fatimah Azzahra",
               "Muhammad Rizki Ramadhan", "Nur Hidayah", "Khadijah Alaydrus", "Umar Baraja",
               "Fatimah Assegaf", "Muhammad Iqbal Hasan", "Ahmad Khairul Anam", "Zainal Abidin",
               "Siti Nurhaliza", "Yahya Assegaf", "Syaiful Bahri"],
}
SIBLING_GIVEN = ["Andi", "Budi", "Rina", "Dewi", "Agus", "Hendra", "Yanti", "Rudi", "Fitri", "Joko",
                 "Wati", "Indra", "Lestari", "Ratna", "Yohanes", "Maria", "Kevin", "Putri"]
COMMON_FIRST = ["Siti", "Muhammad", "Nur", "Sri", "Ahmad", "Dewi", "Agus", "Andi", "Putu", "Made"]
SECOND_NAMES = ["Aminah", "Rahayu", "Hidayat", "Lestari", "Wulandari", "Saputra", "Kurniawan", "Hasanah",
                "Maesaroh", "Fauzi", "Setiawan", "Marlina", "Pratama", "Anggraini", "Susanti", "Ramadhan"]
# Real names one letter or one sound apart that belong to different people.
CONFUSABLE_NAMES = [("Rina", "Rini"), ("Eka", "Eko"), ("Putra", "Putri"), ("Hadi", "Hari"), ("Yuli", "Juli"),
                    ("Hidayat", "Hidayah"), ("Sumarni", "Sumarno"), ("Nur", "Nurul"), ("Wahyu", "Wahyudi"),
                    ("Rudi", "Rusdi"), ("Yanti", "Santi"), ("Dian", "Diah"), ("Salim", "Halim"),
                    ("Rahman", "Rahim"), ("Rizki", "Rizal"), ("Dewi", "Dewa"), ("Ani", "Ana"),
                    ("Suparman", "Suparmin"), ("Joko", "Yoko"), ("Wati", "Yati"), ("Iwan", "Irwan"),
                    ("Fauzi", "Fauzan"), ("Hasan", "Husin"), ("Gede", "Made"), ("Wayan", "Nyoman")]
PREFIXES = ["Tn. ", "TN ", "Ny. ", "Nn.", "Sdr. ", "Sdri ", "H. ", "Hj. ", "dr. ", "Drs. ", "Dra ", "Ir. ",
            "Prof. Dr. ", "Ny. Hj. ", "Bpk. ", "Ibu "]
SUFFIXES = [", S.Kom", " S.Pd", ", S.E.", " SH", ", M.Kes", ", A.Md.Keb", " Amd.Keb", ", SKM", " S. Farm",
            ", S.Kep., Ners", " M.Farm", ", S.H., M.H."]
# Written variants a clerk may produce for one name (current spelling -> other spellings).
SPELLINGS = {
    "Muhammad": ["Muhamad", "Mohammad", "Moh.", "Moch.", "M.", "Mochammad", "Muhammed"],
    "Siti": ["Sity", "Sitti"], "Sitti": ["Siti"], "Nur": ["Noer"], "Yusuf": ["Jusuf", "Yusup", "Joesoef"],
    "Ahmad": ["Achmad", "Akhmad"], "Abdul": ["Abdoel", "Abd."], "Wahyu": ["Wahju"], "Khadijah": ["Chadidjah"],
    "Khairul": ["Choirul", "Chairul"], "Hidayat": ["Hidajat"], "Rizki": ["Rizky", "Rizqi"],
    "Ramadhan": ["Ramadan"], "Syaiful": ["Saiful"], "Syamsul": ["Samsul"], "Zainal": ["Zaenal"],
    "Agus": ["Agoes"], "Sutrisno": ["Soetrisno"], "Susilo": ["Soesilo"], "Cahyono": ["Tjahjono"],
    "Joko": ["Djoko"], "Yahya": ["Jahja"], "Hendra": ["Hendera"], "Fitri": ["Pitri"], "Lim": ["Liem"],
    "Liem": ["Lim"], "Tjoa": ["Coa"], "Nyoman": ["Njoman"], "Ketut": ["Ktut"], "Putra": ["Putera"],
    "Iqbal": ["Ikbal"], "Fatimah": ["Fathimah"], "Yuliana": ["Juliana"], "Supriatna": ["Supriyatna"],
}


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: str  # "same" | "different"
    kind: str


def _typo(rng: random.Random, token: str, edits: int) -> str:
    letters = list(token)
    for _ in range(edits):
        position = rng.randrange(1, len(letters))  # first letters are rarely mistyped
        operation = rng.choice(["substitute", "delete", "transpose", "insert"])
        if operation == "substitute":
            letters[position] = rng.choice("aeiounrstlkmh")
        elif operation == "delete" and len(letters) > 4:
            del letters[position]
        elif operation == "transpose" and position < len(letters) - 1:
            letters[position], letters[position + 1] = letters[position + 1], letters[position]
        else:
            letters.insert(position, rng.choice("aeiounrh"))
    return "".join(letters)


def _same_variants(rng: random.Random, name: str) -> list[tuple[str, str]]:
    tokens = name.split()
    out = [("titles", rng.choice(PREFIXES) + name + rng.choice(SUFFIXES)),
           ("all-caps", (rng.choice(PREFIXES) + name).upper())]
    if len(tokens) >= 2:
        swapped = f"{tokens[-1]}, {' '.join(tokens[:-1])}" if rng.random() < 0.5 else " ".join(
            [tokens[-1], *tokens[:-1]])
        out.append(("order-swapped", swapped))
    spelled = [t for t in tokens if t in SPELLINGS]
    if spelled:
        token = rng.choice(spelled)
        out.append(("spelling", name.replace(token, rng.choice(SPELLINGS[token]), 1)))
    long_tokens = [i for i, t in enumerate(tokens) if len(t) >= 5]
    if long_tokens:
        index = rng.choice(long_tokens)
        edits = 1 if rng.random() < 0.6 else 2
        typo = tokens[:index] + [_typo(rng, tokens[index], edits)] + tokens[index + 1:]
        if typo != tokens:
            out.append((f"typo-{edits}", " ".join(typo)))
    if len(tokens) >= 3 and tokens[0] not in ("I", "Ni"):
        out.append(("missing-middle", " ".join([tokens[0], *tokens[2:]])))
    if len(tokens) >= 2 and len(tokens[-1]) > 2:
        out.append(("initial", " ".join([*tokens[:-1], tokens[-1][0] + "."])))
    if len(tokens) == 2 and tokens[0] not in COMMON_FIRST and len(tokens[0]) >= 5:
        out.append(("mononym", tokens[0]))
    if tokens[0] in ("I", "Ni"):
        out.append(("balinese-marker", " ".join(tokens[1:])))
    if len(tokens) >= 2 and len(tokens[0]) <= 4 and tokens[0] not in ("I", "Ni", "Andi"):
        out.append(("joined", tokens[0] + tokens[1].lower() + " " + " ".join(tokens[2:])))
    return [(kind, text.strip()) for kind, text in out]


def _different_pairs(rng: random.Random) -> list[Pair]:
    pairs = []
    everyone = [name for names in PEOPLE.values() for name in names]
    for name in everyone:  # siblings / clan mates / same generation name
        tokens = name.split()
        if len(tokens) >= 2:
            given = rng.choice([g for g in SIBLING_GIVEN if g != tokens[0] and g != tokens[-2]])
            sibling = " ".join([given, *tokens[1:]]) if tokens[0] not in ("I", "Ni", "Andi", "Lim", "Tan",
                                                                           "Liem", "Kwee", "Wong", "Tjoa") \
                else " ".join([*tokens[:-1], given])
            pairs.append(Pair(name, sibling, "different", "sibling"))
    for first in COMMON_FIRST:  # a common first name with different second names
        second_a, second_b = rng.sample(SECOND_NAMES, 2)
        pairs.append(Pair(f"{first} {second_a}", f"{first} {second_b}", "different", "common-first"))
        pairs.append(Pair(f"{first} {second_a}", f"{first} {second_a} {rng.choice(SECOND_NAMES)}",
                          "different", "extra-token"))
    for left, right in CONFUSABLE_NAMES:  # one meaningful token differs
        other = rng.choice(SECOND_NAMES)
        pairs.append(Pair(f"{left} {other}", f"{right} {other}", "different", "one-token"))
        pairs.append(Pair(f"{other} {left}", f"{other} {right}", "different", "one-token"))
    hand_picked = [
        ("Siti Aminah", "Siti Aminah Putri"), ("Muhammad Yusuf", "Muhammad Yunus"),
        ("By. Ny. Sari I", "By. Ny. Sari II"), ("Bayi 1 Ny. Rina", "Bayi 2 Ny. Rina"),
        ("By. Ny. Sari", "Sari"), ("Bayi Ny. Dewi Lestari", "Dewi Lestari"),
        ("Lim Swie Hong", "Lim Swie Liang"), ("I Wayan Sudarsana", "I Made Sudarsana"),
        ("Andi Baso Amir", "Andi Baso Amri"), ("Rahmat Hidayat", "Rahmat Hidayah"),
        ("Nur Hidayah", "Nurul Hidayah"), ("Yuli Astuti", "Juli Astuti"),
        ("Ni Made Sukerti", "Ni Made Sukarti"),
        ("Ahmad Fauzi", "Ahmad Fauzan"), ("Siti Fatimah", "Siti Fatimah Azzahra"),
        ("Agus Salim", "Agus Halim"),
        ("Eka Putri", "Eko Putra"), ("Budi Santoso", "Budi Susanto"),
        ("Hendra Wijaya", "Hendra Wijayakusuma"),
        ("Sri Wahyuni", "Sri Wahyuningsih"), ("Dewi Sartika", "Dewi Kartika"), ("Sumarni", "Sumarno"),
    ]
    pairs += [Pair(a, b, "different", "hand-picked") for a, b in hand_picked]
    return pairs


def generate_pairs(seed: int = SEED) -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for names in PEOPLE.values():
        for name in names:
            for kind, variant in _same_variants(rng, name):
                if variant != name:
                    pairs.append(Pair(name, variant, "same", kind))
    same_by_hand = [
        ("Bayi Ny. Sari I", "By Ny Sari (1)"), ("By. Ny. Rina Marlina", "BAYI NY RINA MARLINA"),
        ("Abdurrahman Wahid", "Abdul Rahman Wahid"), ("Nur Hayati", "Nurhayati"),
        ("Soekarno", "Sukarno"), ("Sity Noer Hajati", "Siti Nur Hayati"), ("M. Yusuf", "Muhammad Yusuf"),
        ("I Ketut Ariana", "Ketut Ariana"), ("Tjoa Bun Kiat", "Coa Bun Kiat"), ("Ma'ruf Amin", "Maruf Amin"),
    ]
    pairs += [Pair(a, b, "same", "hand-picked") for a, b in same_by_hand]
    pairs += _different_pairs(rng)
    unique = {(p.a, p.b): p for p in pairs}
    return list(unique.values())


def write_pairs(pairs: list[Pair], path: Path = PAIRS_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "label", "kind"])
        for pair in pairs:
            writer.writerow([pair.a, pair.b, pair.label, pair.kind])


def read_pairs(path: Path = PAIRS_PATH) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [Pair(row["a"], row["b"], row["label"], row.get("kind", "")) for row in csv.DictReader(handle)]


# --- evaluation --------------------------------------------------------------------------------
def _simple_tokens(name: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9]+", name.lower()))


def _jaro_winkler(a: str, b: str) -> float:
    return 100.0 * JaroWinkler.normalized_similarity(a, b)


def _jw_token_similarity(a: str, b: str) -> float:
    similarity = JaroWinkler.normalized_similarity(a, b)
    return similarity if similarity >= 0.7 else 0.0


SCORERS: dict[str, Callable[[str, str], float]] = {
    "ratio": fuzz.ratio, "partial_ratio": fuzz.partial_ratio, "token_sort_ratio": fuzz.token_sort_ratio,
    "token_set_ratio": fuzz.token_set_ratio, "WRatio": fuzz.WRatio, "QRatio": fuzz.QRatio,
    "jaro_winkler": _jaro_winkler,
}


def candidate_scorers() -> dict[str, Callable[[str, str], float]]:
    """Every candidate as a function of the two names as written."""
    candidates = {}
    for name, scorer in SCORERS.items():
        candidates[f"{name} / raw"] = scorer
        candidates[f"{name} / normalised"] = (
            lambda a, b, s=scorer: s(normalise_name(a).text, normalise_name(b).text))
    candidates["aligned tokens / raw"] = lambda a, b: aligned_token_score(
        _simple_tokens(a), _simple_tokens(b))
    candidates["aligned tokens, JW / normalised"] = lambda a, b: aligned_token_score(
        normalise_name(a).tokens, normalise_name(b).tokens, _jw_token_similarity)
    candidates["name_similarity (chosen)"] = name_similarity
    return candidates


@dataclass(frozen=True)
class Evaluation:
    scorer: str
    best_threshold: float
    precision: float
    recall: float
    f1: float
    zero_fp_threshold: float  # smallest threshold at which no "different" pair scores at or above
    zero_fp_recall: float
    min_same: float


def _counts(scores: list[tuple[float, bool]], threshold: float) -> tuple[int, int, int]:
    tp = sum(1 for s, same in scores if same and s >= threshold)
    fp = sum(1 for s, same in scores if not same and s >= threshold)
    fn = sum(1 for s, same in scores if same and s < threshold)
    return tp, fp, fn


def zero_false_match_threshold(scores: list[tuple[float, bool]]) -> float:
    """Smallest threshold (0.1 steps) above every score of a "different" pair."""
    highest_different = max((s for s, same in scores if not same), default=0.0)
    return round(highest_different + 0.1, 1)


def evaluate(scorer_name: str, scorer: Callable[[str, str], float], pairs: list[Pair]) -> Evaluation:
    scores = [(float(scorer(p.a, p.b)), p.label == "same") for p in pairs]
    best = (-1.0, 0.0, 0.0, 0.0)
    for threshold in sorted({s for s, _ in scores}):
        tp, fp, fn = _counts(scores, threshold)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best[0]:
            best = (f1, threshold, precision, recall)
    zero_fp = zero_false_match_threshold(scores)
    tp, _fp, fn = _counts(scores, zero_fp)
    return Evaluation(scorer_name, best[1], best[2], best[3], best[0], zero_fp, tp / (tp + fn),
                      min(s for s, same in scores if same))


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def generate(seed: int = SEED, path: Path = PAIRS_PATH) -> None:
    """Write the labelled pair set."""
    pairs = generate_pairs(seed)
    write_pairs(pairs, path)
    same = sum(p.label == "same" for p in pairs)
    typer.echo(f"wrote {len(pairs)} pairs ({same} same, {len(pairs) - same} different) to {path}")


@app.command("evaluate")
def evaluate_command(path: Path = PAIRS_PATH, show_hardest: int = 0) -> None:
    """Print the scorer table as Markdown."""
    pairs = read_pairs(path)
    same = sum(p.label == "same" for p in pairs)
    typer.echo(f"{len(pairs)} pairs: {same} same, {len(pairs) - same} different\n")
    typer.echo("| scorer / input | best-F1 threshold | precision | recall | F1 | zero-false-match threshold "
               "| recall there | lowest same score |")
    typer.echo("|---|---|---|---|---|---|---|---|")
    for name, scorer in candidate_scorers().items():
        e = evaluate(name, scorer, pairs)
        typer.echo(f"| {name} | {e.best_threshold:.1f} | {e.precision:.3f} | {e.recall:.3f} | {e.f1:.3f} "
                   f"| {e.zero_fp_threshold:.1f} | {e.zero_fp_recall:.3f} | {e.min_same:.1f} |")
    if show_hardest:
        scored = sorted(((name_similarity(p.a, p.b), p) for p in pairs), key=lambda x: x[0])
        typer.echo("\nhighest-scoring different pairs:")
        for score, p in [x for x in reversed(scored) if x[1].label == "different"][:show_hardest]:
            typer.echo(f"  {score:5.1f}  {p.kind:13} {p.a!r} / {p.b!r}")
        typer.echo("lowest-scoring same pairs:")
        for score, p in [x for x in scored if x[1].label == "same"][:show_hardest]:
            typer.echo(f"  {score:5.1f}  {p.kind:13} {p.a!r} / {p.b!r}")


if __name__ == "__main__":
    app()
