"""The matching model's comparisons, defined once. Pure; no Splink here.

Each comparison is an ordered list of levels; a pair takes the first level whose condition holds. Every
level has the same condition written twice, side by side: as SQL over Splink's ``<column>_l`` /
``<column>_r`` (DuckDB's dialect; ``spark_sql`` where Spark names the list functions otherwise: the
trainer in ``tools/linkage``, the scoring engines in ``shared/adapters/splink_scoring.py``) and as a
Python predicate over two ``linkage_row``s (the incremental path, ``shared.linkage.model``). Name similarity is
``shared.names.name_similarity`` in both: the trainer registers it in DuckDB as ``name_similarity``.
``tests/unit/test_linkage_model.py`` proves both paths give the same match probability.

A row is built from the index record (``shared.domain.patient.member_record``): normalised name,
birth date and sex (NIK-derived when the record lacks them), NIK token, NIK digit masks, NIK region,
phone tokens. No raw NIK, phone or address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.names import name_similarity

NAME_HIGH, NAME_MEDIUM = 92.0, 80.0   # name_similarity levels (0..100, the calibrated scorer)
HOUSEHOLD_COMPARISONS = ("phone",)    # evidence of a household, never of identity (see decisions)

Row = Mapping[str, object]


def linkage_row(patient_id: str, record: Mapping) -> dict:
    """The columns every comparison reads, from one index record."""
    phones = sorted(c for c in record.get("corroborators") or () if c.startswith("phone:"))
    return {
        "unique_id": patient_id,
        "name": record.get("name") or None,
        "birth_date": record.get("birth_date") or None,
        "gender": record.get("gender") or None,
        # A newborn on its mother's NIK ("nik-ibu") carries her token: not its own NIK.
        "nik_token": record.get("nik_token") if record.get("kind") == "nik" else None,
        "nik_masks": list(record.get("nik_masks") or ()) or None,
        "region": record.get("region") or None,
        "phones": phones or None,
    }


@dataclass(frozen=True)
class Level:
    label: str
    sql: str                                  # over <column>_l / <column>_r
    holds: Callable[[Row, Row], bool]         # the same condition over two rows
    is_null: bool = False
    tf_column: str | None = None              # term-frequency adjusted level (exact names)
    spark_sql: str | None = None              # the same SQL in Spark's dialect where DuckDB's differs (lists)


@dataclass(frozen=True)
class Comparison:
    name: str
    columns: tuple[str, ...]
    levels: tuple[Level, ...]

    def level_of(self, left: Row, right: Row) -> int:
        for index, level in enumerate(self.levels):
            if level.holds(left, right):
                return index
        raise AssertionError(f"comparison {self.name}: no else level")


def _null(column: str) -> Level:
    return Level("null", f"{column}_l IS NULL OR {column}_r IS NULL",
                 lambda a, b: a[column] is None or b[column] is None, is_null=True)


def _else() -> Level:
    return Level("else", "ELSE", lambda a, b: True)


def _sub(value, start: int, length: int) -> str:
    """SQL substr (1-based) on a string."""
    return str(value)[start - 1:start - 1 + length]


def _tokens(value) -> set[str]:
    return set(str(value).split(" "))


def _name_score(a: Row, b: Row) -> float:
    return float(name_similarity(str(a["name"]), str(b["name"])))


NAME = Comparison("name", ("name",), (
    _null("name"),
    Level("exact", "name_l = name_r", lambda a, b: a["name"] == b["name"], tf_column="name"),
    # One name holds every word of the other: a dropped word ("Siti" / "Siti Rahayu") or a swap.
    Level("subset-or-swap",
          "list_has_all(string_split(name_l, ' '), string_split(name_r, ' ')) "
          "OR list_has_all(string_split(name_r, ' '), string_split(name_l, ' '))",
          lambda a, b: _tokens(a["name"]) <= _tokens(b["name"]) or _tokens(b["name"]) <= _tokens(a["name"]),
          spark_sql="size(array_except(split(name_r, ' '), split(name_l, ' '))) = 0 "
                    "OR size(array_except(split(name_l, ' '), split(name_r, ' '))) = 0"),
    Level("high", f"name_similarity(name_l, name_r) >= {NAME_HIGH}", lambda a, b: _name_score(a, b) >= NAME_HIGH),
    Level("medium", f"name_similarity(name_l, name_r) >= {NAME_MEDIUM}",
          lambda a, b: _name_score(a, b) >= NAME_MEDIUM),
    _else(),
))

BIRTH_DATE = Comparison("birth_date", ("birth_date",), (
    _null("birth_date"),
    # 1 January is the usual placeholder of an unknown birth date: agreeing on it says less.
    Level("exact", "birth_date_l = birth_date_r AND substr(birth_date_l, 6, 5) <> '01-01'",
          lambda a, b: a["birth_date"] == b["birth_date"] and _sub(a["birth_date"], 6, 5) != "01-01"),
    Level("exact-placeholder", "birth_date_l = birth_date_r", lambda a, b: a["birth_date"] == b["birth_date"]),
    Level("day-month-swapped",
          "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) "
          "AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) "
          "AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)",
          lambda a, b: (_sub(a["birth_date"], 1, 4) == _sub(b["birth_date"], 1, 4)
                        and _sub(a["birth_date"], 6, 2) == _sub(b["birth_date"], 9, 2)
                        and _sub(a["birth_date"], 9, 2) == _sub(b["birth_date"], 6, 2))),
    Level("same-year", "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4)",
          lambda a, b: _sub(a["birth_date"], 1, 4) == _sub(b["birth_date"], 1, 4)),
    _else(),
))

NIK = Comparison("nik", ("nik_token", "nik_masks"), (
    _null("nik_token"),
    Level("exact", "nik_token_l = nik_token_r", lambda a, b: a["nik_token"] == b["nik_token"]),
    Level("one-digit", "len(list_intersect(nik_masks_l, nik_masks_r)) > 0",
          lambda a, b: bool(set(a["nik_masks"] or ()) & set(b["nik_masks"] or ())),
          spark_sql="size(array_intersect(nik_masks_l, nik_masks_r)) > 0"),
    _else(),
))

SEX = Comparison("sex", ("gender",), (
    _null("gender"),
    Level("exact", "gender_l = gender_r", lambda a, b: a["gender"] == b["gender"]),
    _else(),
))

PHONE = Comparison("phone", ("phones",), (
    _null("phones"),
    Level("shared", "list_has_any(phones_l, phones_r)", lambda a, b: bool(set(a["phones"]) & set(b["phones"])),
          spark_sql="arrays_overlap(phones_l, phones_r)"),
    _else(),
))

REGION = Comparison("region", ("region",), (
    _null("region"),
    Level("district", "region_l = region_r", lambda a, b: a["region"] == b["region"]),
    Level("regency", "substr(region_l, 1, 4) = substr(region_r, 1, 4)",
          lambda a, b: _sub(a["region"], 1, 4) == _sub(b["region"], 1, 4)),
    _else(),
))

COMPARISONS: tuple[Comparison, ...] = (NAME, BIRTH_DATE, NIK, SEX, PHONE, REGION)
