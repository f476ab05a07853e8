"""Each Patient's facts (``patient_facts``) computed once per batch backfill: the keys step computes them
to place the Patient in its groups and spools them here; its part's worker reads them back by place
when it decides the part (``batch_parts``), instead of computing them a second time from the resource.

``patient_facts`` is most of the keys step and a quarter of deciding (its keyed digests: ~30 HMACs per
NIK); reading the spool back costs a tenth of computing them. Using the keys step's facts is also what
keeps a part's decisions on the groups it was split by: facts computed again later could differ (a NIK's
century is read against today's date).

Layout (``<directory>/``): per byte range of the keys step, ``<file>-<start>.facts`` (the facts, one
pickle after the other, in the range's order) and ``<file>-<start>.index`` (the Patients' offsets in
their NDJSON file, and where each one's facts begin). The spool lives in the run's work directory while
deciding and is removed after it: it holds patient data, like the spool of a FHIR read.
"""

from __future__ import annotations

import pickle
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from shared.domain.patient import PatientFacts


def _stem(number: int, start: int) -> str:
    return f"{number:05d}-{start:015d}"


class FactsWriter:
    """The facts of one byte range of an NDJSON file, in the order its Patients are read."""

    def __init__(self, directory: Path, number: int, start: int):
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / _stem(number, start)
        self._facts = self._path.with_suffix(".facts").open("wb")
        self._offsets, self._positions = array("q"), array("q")

    def add(self, offset: int, facts: PatientFacts) -> None:
        self._offsets.append(offset)
        self._positions.append(self._facts.tell())
        pickle.dump(facts, self._facts, protocol=pickle.HIGHEST_PROTOCOL)

    def __enter__(self) -> FactsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._facts.close()
        if exc[0] is None:   # the index last: a range without one was not spooled whole
            with self._path.with_suffix(".index").open("wb") as index:
                pickle.dump((self._offsets, self._positions), index, protocol=pickle.HIGHEST_PROTOCOL)


class FactsReader:
    """The spooled facts of Patients by their place (``(file number, offset)``), ranges loaded as needed."""

    def __init__(self, directory: Path):
        self._directory = directory
        self._starts: dict[int, list[int]] = {}                       # file number -> its ranges' starts
        self._indexes: dict[tuple[int, int], tuple[array, array]] = {}
        self._files: dict[tuple[int, int], BinaryIO] = {}

    def _range_of(self, number: int, offset: int) -> tuple[int, int]:
        starts = self._starts.get(number)
        if starts is None:
            starts = self._starts[number] = sorted(int(path.stem.split("-")[1])
                                                   for path in self._directory.glob(f"{number:05d}-*.index"))
        found = bisect_right(starts, offset) - 1
        if found < 0:
            raise LookupError(f"no spooled facts for offset {offset} of file {number}")
        return number, starts[found]

    def facts_at(self, places: Iterable[tuple[int, int]]) -> Iterator[PatientFacts]:
        for number, offset in places:
            where = self._range_of(number, offset)
            if where not in self._indexes:
                with (self._directory / _stem(*where)).with_suffix(".index").open("rb") as index:
                    self._indexes[where] = pickle.load(index)
                self._files[where] = (self._directory / _stem(*where)).with_suffix(".facts").open("rb")
            offsets, positions = self._indexes[where]
            found = bisect_left(offsets, offset)
            if found == len(offsets) or offsets[found] != offset:
                raise LookupError(f"no spooled facts for offset {offset} of file {number}")
            handle = self._files[where]
            handle.seek(positions[found])
            yield pickle.load(handle)

    def __enter__(self) -> FactsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        self._indexes.clear()
        self._starts.clear()
