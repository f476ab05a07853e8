"""The store split into parts that share no group, decided in worker processes (``batch_parts``), gives
exactly the documents one pass over the whole store gives: over an empty index and over one that holds
part of the store already; the parts keep components whole, and an index scoped to a part refuses any
other group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.adapters.index_codec import decode
from shared.adapters.memory_index import MemoryIndex, OutsideScope
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.group import Group
from shared.domain.pair_screen import screen_key
from shared.domain.patient import nik_prefix_block, patient_facts, phone_block
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem
from shared.ports.index_bulk import StoredDoc
from shared.services.batch_decide import decide, matching_in_memory
from shared.services.batch_files import KINDS, DecisionFiles, changed_documents, merge_shared
from shared.services.batch_parts import ParallelDecide, PartResult
from shared.services.batch_score import score_store, scores_by_part
from shared.services.batch_split import split
from tools.dataset.generate import Params, generate

SETTINGS = Settings()
STAMP = "2026-01-01T00:00:00+00:00"
TIMES = ("created_at", "updated_at", "closed_at")   # when the domain made a document: not a decision


def _bare(value):
    if isinstance(value, dict):
        return {k: _bare(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_bare(v) for v in value]
    return value


def _lines(kind_lines) -> dict[str, list]:
    found: dict[str, list] = {kind: [] for kind in KINDS}
    for kind, line in kind_lines:
        found[kind].append(_bare(json.loads(json.dumps(line))))   # as read back from a file
    return {kind: sorted(lines, key=json.dumps) for kind, lines in found.items()}


def _one_pass(source: NdjsonPatients, stored: list[StoredDoc], settings: Settings = SETTINGS) -> dict[str, list]:
    index = MemoryIndex()
    for doc in stored:
        if doc.collection == "patient_keys":
            index.keys.load(PatientKeys.from_doc(doc.doc_id, doc.data))
        elif doc.collection == "review_items":
            index.reviews.load(ReviewItem.from_doc(doc.doc_id, doc.data))
        else:
            index.groups.load(Group.from_doc(f"{doc.collection}/{doc.doc_id}", doc.data))
    decide(source.pages(), matching_in_memory(settings, index))
    return _lines(changed_documents(index, {(d.collection, d.doc_id): d for d in stored}, STAMP))


def _in_parts(source: NdjsonPatients, stored: list[StoredDoc], out: Path) -> dict[str, list]:
    return _decided_in_parts(source, stored, out)[0]


def _decided_in_parts(source: NdjsonPatients, stored: list[StoredDoc], out: Path,
                      by_part=None, settings: Settings = SETTINGS) -> tuple[dict[str, list], PartResult]:
    # Small ranges and parts: many of each, ranges cut through lines.
    parallel = ParallelDecide(settings, source, workers=2, range_bytes=50_000, part_patients=40,
                              scores_by_part=by_part)
    result = parallel.run(stored, out, STAMP)
    files = DecisionFiles(out)
    return _lines((kind, _read_back(kind, line)) for kind in KINDS for line in files.lines(kind)), result


def _read_back(kind: str, line: str) -> list:
    """A decision file's line, its document in the ``to_doc()`` form (the files hold the stored form)."""
    value = json.loads(line)
    if kind == "outbox":
        return value
    collection, doc_id, doc, version = value
    return [collection, doc_id, decode(collection, doc), version]


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=1500, seed=11, resources_per_patient=0.0), SETTINGS)
    return directory


def test_parts_decide_as_one_pass_over_an_empty_index(district, tmp_path):
    source = NdjsonPatients(district)
    expected = _one_pass(source, [])
    assert len(expected["groups"]) > 1000 and len(expected["outbox"]) > 50 and len(expected["review_items"]) > 20
    assert _in_parts(source, [], tmp_path / "parts") == expected


def test_parts_decide_as_one_pass_over_a_stored_index(district, tmp_path):
    # The index holds the first half of the patients' decisions; the run reads them all.
    patients = [p for page in NdjsonPatients(district).pages() for p in page]
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients[:750]))
    first = _one_pass(NdjsonPatients(tmp_path / "half"), [])
    stored = [StoredDoc(collection, doc_id, doc, "2026-01-01T00:00:00.000001Z")
              for kind in ("groups", "patient_keys", "review_items") for collection, doc_id, doc, _ in first[kind]]
    source = NdjsonPatients(district)
    expected = _one_pass(source, stored)
    assert any(line[3] for line in expected["groups"]), "some groups are updates of stored ones"
    assert _in_parts(source, stored, tmp_path / "parts") == expected


def test_two_runs_at_one_stamp_decide_the_very_same_documents(district, tmp_path):
    """A resumed decide phase recognises the documents its killed attempt wrote only if it decides them
    byte for byte again: every time a decision stores (a merge request's ``created_at``, a review item's)
    is the run's stamp, not the clock's."""
    source = NdjsonPatients(district)
    runs = []
    for name in ("first", "again"):
        ParallelDecide(SETTINGS, source, workers=2, range_bytes=50_000, part_patients=40).run([], tmp_path / name,
                                                                                               STAMP)
        files = DecisionFiles(tmp_path / name)
        runs.append({kind: sorted(files.lines(kind)) for kind in KINDS})
    first, again = runs
    assert sum(STAMP in line for line in first["outbox"]) == len(first["outbox"]) > 50   # created at the stamp
    assert first == again


def test_a_failure_after_a_decided_part_drops_the_parts_not_started(district, tmp_path):
    """Writing that failed (``on_part_decided`` raising) stops the phase at once: the run does not go on
    deciding every queued part before it reports the error."""
    def writing_failed(number: int) -> None:
        raise ConnectionError("the store went away")

    parallel = ParallelDecide(SETTINGS, NdjsonPatients(district), workers=2, range_bytes=50_000, part_patients=40,
                              on_part_decided=writing_failed)
    with pytest.raises(ConnectionError):
        parallel.run([], tmp_path / "parts", STAMP)
    parts = sum(len(page) for page in NdjsonPatients(district).pages()) // 40   # at least this many parts
    decided = len(list((tmp_path / "parts" / "groups").glob("*.jsonl")))
    # The failed part, the one running beside it, the few the pool had handed its workers already, and
    # on a loaded machine those the workers finished before this process woke up: never most of them.
    assert 1 <= decided < parts // 2 and parts > 30, (decided, parts)


def test_parts_with_splink_scores_decide_as_one_pass(district, tmp_path):
    # The DuckDB engine scores the store once; each part's worker asks its own share of the pairs first.
    from shared.adapters.splink_scoring import SplinkScoring

    source, engine, scores = NdjsonPatients(district), SplinkScoring("duckdb"), tmp_path / "scores"
    score_store(source.pages(), matching_in_memory(SETTINGS, MemoryIndex()), SETTINGS, engine, scores)
    expected = _one_pass(source, [])
    lines, result = _decided_in_parts(source, [], tmp_path / "parts",
                                      lambda part_of: scores_by_part(engine, scores, part_of))
    assert lines == expected
    scoring = result.scoring
    assert scoring["scored_by_engine"] > 100 and scoring["scored_by_model"] == 0, scoring
    clusters = {cluster for cluster in engine.clusters(scores).values()}
    assert scoring["clusters"] == len(clusters) > 100
    assert scoring["kept_whole"] + scoring["split_by_rules"] == scoring["clusters"] and scoring["kept_whole"] > 0


def test_a_scored_pair_across_two_parts_is_left_out(district, tmp_path):
    """Only a pair the screen found no-match before any score can span two parts: nobody asks it."""
    from shared.adapters.splink_scoring import SplinkScoring

    engine, scores = SplinkScoring("duckdb"), tmp_path / "scores"
    score_store(NdjsonPatients(district).pages(), matching_in_memory(SETTINGS, MemoryIndex()), SETTINGS, engine,
                scores)
    id_l, id_r, *_ = next(engine.pairs(scores))
    part_of = {row["unique_id"]: 0 for row in engine.rows(scores)} | {id_r: 1}
    parts = scores_by_part(engine, scores, part_of)
    pairs = [pair for part in parts.values() for pair in part.read(part.folder, part.number)[1]]
    assert len(pairs) > 100 and all(tuple(pair[:2]) != (id_l, id_r) for pair in pairs)


def _placed(district: Path, settings: Settings = SETTINGS) -> list:
    """The keys step's output (``batch_parts.Placed``), in one process."""
    matching = matching_in_memory(settings, MemoryIndex())
    patients = []
    for n, p in enumerate(p for page in NdjsonPatients(district).pages() for p in page):
        facts = patient_facts(p, settings)
        prefix = nik_prefix_block(facts, settings)
        phone = phone_block(facts, settings) if facts.kind == "nik" else None
        patients.append((0, n, p["id"], matching.groups_for(facts), screen_key(facts),
                         f"demographic_index/{prefix}" if prefix else None,
                         f"demographic_index/{phone}" if phone else None,
                         not facts.birth_date or "birth_date" in facts.derived))
    return patients


def test_parts_keep_components_whole(district):
    patients = _placed(district)
    parts = split(patients, [], SETTINGS, part_patients=40)
    assert sum(len(part.places) for part in parts) == len(patients) and len(parts) > 10
    owner: dict[str, int] = {}
    for part in parts:
        for group in part.groups - part.shared:
            assert owner.setdefault(group, part.number) == part.number, f"{group} in two parts"
        assert part.places == sorted(part.places)   # the source's order within a part
    shared = set().union(*(part.shared for part in parts))
    # Blocks held by several parts exist (so the equality tests above go through merging their copies),
    # and only blocks are: a NIK group and a NIK prefix block (read by the NIK group's rules) never are.
    assert len(shared) > 30
    assert all(g.startswith("demographic_index/") for g in shared)
    assert not shared & {p[5] for p in patients if p[5]}
    # A household member a NIK group's rules read (``batch_split._households``) is in the group's part.
    from shared.services.batch_split import _households

    part_of = {patient[2]: part.number for part in parts for patient in patients
               if (patient[0], patient[1]) in set(part.places)}
    for patient_id, nik_group in _households(patients, SETTINGS):
        assert owner.get(nik_group, part_of[patient_id]) == part_of[patient_id]
    assert all(owner.get(g) is None for g in shared)


SMALL_CAP = Settings(block_member_cap=3)   # blocks of 1,500 patients past their cap: many


def test_records_past_a_block_cap_are_decided_apart_as_in_one_pass(district, tmp_path):
    # A block past its cap joins only the records the live index lets in; the others find it full in
    # whatever part their other groups put them (the bound that keeps a store of a million in small parts).
    patients = _placed(district, SMALL_CAP)
    parts = split(patients, [], SMALL_CAP, part_patients=40)
    full = {group for part in parts for group in part.full}
    assert len(full) > 20, "the test needs blocks past the cap"
    for part in parts:
        for group, held in part.full.items():
            assert 0 <= held <= SMALL_CAP.block_member_cap and group in part.groups
    # Every block past its cap is held by a part it is full in, that holds none of its members or some.
    positions = {(patient[0], patient[1]): patient for patient in patients}
    for part in parts:
        for group in part.full:
            listers = [pos for pos in part.places if group in positions[pos][3]]
            assert len(listers) > part.full[group]
    source = NdjsonPatients(district)
    assert _decided_in_parts(source, [], tmp_path / "parts", settings=SMALL_CAP)[0] == _one_pass(source, [], SMALL_CAP)


def test_a_full_block_changes_nothing_for_a_later_record():
    from shared.domain.indexing import MemberApplied

    index = MemoryIndex(scope=frozenset({"demographic_index/b"}), full={"demographic_index/b": 1}, member_cap=3)
    index.groups.transact("demographic_index/b", lambda tx: tx.group.members.update(p1={"status": "active"}))

    def sees_full(tx):
        assert len(tx.group.members) == 3
        return MemberApplied(False, None, full=True)

    index.groups.transact("demographic_index/b", sees_full)
    assert list(index.groups.groups["demographic_index/b"].members) == ["p1"]    # stand-ins never stored
    with pytest.raises(OutsideScope, match="full"):
        index.groups.transact("demographic_index/b", lambda tx: tx.group.members.update(p2={}))


def test_an_index_scoped_to_a_part_refuses_other_groups():
    index = MemoryIndex(scope=frozenset({"nik_index/a"}))
    index.groups.transact("nik_index/a", lambda tx: None)
    with pytest.raises(OutsideScope):
        index.groups.transact("nik_index/b", lambda tx: None)
    with pytest.raises(OutsideScope):
        index.groups.get("demographic_index/c")


def _copy(tmp_path: Path, part: int, members: dict, places: list, **fields) -> None:
    doc = {**Group.from_doc("demographic_index/b", None).to_doc(), **fields, "members": members, "updated_at": STAMP}
    folder = tmp_path / "shared" / "07"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{part:06d}.jsonl").write_text(json.dumps(["demographic_index", "b", doc, None, places]) + "\n")


def test_shared_block_copies_merge_in_the_source_order(tmp_path):
    _copy(tmp_path, 0, {"p1": {"status": "active"}, "p4": {"status": "master"}}, [[0, 10], [1, 0]], master="p4")
    _copy(tmp_path, 1, {"p2": {"status": "active"}}, [[0, 20]])
    assert merge_shared(tmp_path, "07", 9) == 1
    [(collection, doc_id, doc, version)] = [_read_back("groups", line)
                                             for line in DecisionFiles(tmp_path).lines("groups")]
    assert (collection, doc_id, version, doc["master"]) == ("demographic_index", "b", None, "p4")
    assert list(doc["members"]) == ["p1", "p2", "p4"]


def test_shared_block_copies_that_both_decided_are_a_wrong_split(tmp_path):
    _copy(tmp_path, 0, {"p1": {"status": "master"}}, [[0, 10]], master="p1")
    _copy(tmp_path, 1, {"p2": {"status": "master"}}, [[0, 20]], master="p2")
    with pytest.raises(RuntimeError, match="more than one deciding part"):
        merge_shared(tmp_path, "07", 9)


def test_a_nik_holders_household_is_decided_in_its_part(tmp_path):
    """A NIK group's rules read its household's members under other NIKs (the first phone's block,
    ``pair_rules._relative_namesake``). Those members are passive in the phone block (another NIK: every
    pair there is no-match before any score), so the screen left them out of its component, and a part
    decided the NIK holder without them: the son's record under his father's NIK was merged where one
    pass sends it to review."""
    from tests.unit.test_matching import NIK_MAN, patient
    from tests.unit.test_matching_precision import FATHER_PHONE, HOME

    home = {"phone": FATHER_PHONE, "address": HOME}
    son_own = patient("o", name="Arsyad Rahim", birth="2012-03-04", nik="3201010403120001", **home)
    father = patient("f", name="ARSYAD RAHIM", birth="1990-05-15", nik=NIK_MAN, **home)
    son_under_fathers_nik = patient("s", name="Arsyad Rahim", birth=None, nik=NIK_MAN, **home)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "Patient.ndjson").write_text(
        "".join(json.dumps(p) + "\n" for p in (son_own, father, son_under_fathers_nik)))
    source = NdjsonPatients(tmp_path / "store")
    expected = _one_pass(source, [])
    assert any(item[2]["reason"] == "nik-relative-namesake" for item in expected["review_items"])
    assert not expected["outbox"]
    parts = split(_placed(tmp_path / "store"), [], SETTINGS, part_patients=1)
    assert len(parts) == 1, "the household's member is in its NIK holder's part"
    parallel = ParallelDecide(SETTINGS, source, workers=1, part_patients=1)
    parallel.run([], tmp_path / "parts", STAMP)
    files = DecisionFiles(tmp_path / "parts")
    assert _lines((kind, _read_back(kind, line)) for kind in KINDS for line in files.lines(kind)) == expected
