"""The batch backfill's parts: the store's patients cut into parts that share no group
(``batch_parts`` decides each in a process of its own).

Two patients' decisions can depend on each other only through a group both are in, so the connected
components of patients and their groups (and the stored index's documents: a stored group holds its
members, a patient's keys its groups, a review item its group) are independent; the parts pack whole
components in the order of their first patient.

A block joins only its *deciding* members (``shared.domain.pair_screen``): a member all of whose pairs in
the block are no-match before any score (another NIK, a different adult name) changes nothing there, so
it does not join the block's component. That is what keeps a common birth date or first name from
chaining a fifth of a district into one part. Such a block (*shared*) is then held by several parts, each
with its own patients as members; each part writes its copy to ``shared/<bucket>/``, and the copies are
merged into one document (members in the source's order) before the write phase
(``batch_files.merge_shared``).

A block past its member cap (``block_member_cap``) joins only its first ``block_member_cap`` records in the
source's order, the ones the live index lets in (screened as above): a later record finds it full and
nothing there changes for it, so it is decided wherever its other groups put it, in an index that shows it
the block full (``MemoryIndex(full=...)``). Without that, a common first name and birth year (thousands of
records in a store of a million) chained its records' other groups into one part that grew faster than the
store. This holds when the block's contents depend only on who arrives first: it was never stored, no
record is read twice (a second version could leave it), and no record's rules read its members (a NIK
prefix block, the phone block of a record with a NIK).

What grows with the store is reported in ``split``'s stats (``python -m tools.bench partition``).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.config import Settings
from shared.domain.group import DEMOGRAPHIC_GROUPS, GROUP_COLLECTIONS
from shared.domain.pair_screen import ScreenKey, deciding_members
from shared.names import name_similarity
from shared.ports.index_bulk import StoredDoc

PART_PATIENTS = 2000        # a decide task: whole components, at least this many patients

# A Patient as the keys step finds it: (file, offset, id, groups, screen key, its NIK prefix block or None,
# the phone block its NIK group reads (``MatchingService._nik_neighbours``) or None, whether it states no
# birth date of its own: ``identity_evidence.states_birth_date`` false).
Placed = tuple[int, int, str, list[str], ScreenKey, str | None, str | None, bool]


@dataclass
class Part:
    number: int
    places: list[tuple[int, int]]          # (file number, offset) of its Patients, in the source's order
    groups: frozenset[str]                 # every group its patients and stored documents can touch
    stored: list[StoredDoc] = field(default_factory=list)
    shared: frozenset[str] = frozenset()   # its blocks other parts hold members of too
    full: dict[str, int] = field(default_factory=dict)   # block past its cap -> its members here (MemoryIndex)


class _Components:
    """Union-find over node names (patient ids and group ids)."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._parent: list[int] = []

    def node(self, name: str) -> int:
        number = self._index.get(name)
        if number is None:
            number = self._index[name] = len(self._parent)
            self._parent.append(number)
        return number

    def root(self, number: int) -> int:
        parent = self._parent
        while parent[number] != number:
            parent[number] = parent[parent[number]]
            number = parent[number]
        return number

    def join(self, names: Iterable[str]) -> int:
        roots = [self.root(self.node(name)) for name in names]
        for other in roots[1:]:
            self._parent[other] = roots[0]
        return roots[0]

    def find(self, name: str) -> int:
        return self.root(self.node(name))


def _stored_links(doc: StoredDoc) -> list[str]:
    """The nodes a stored document joins: itself first."""
    if doc.collection in GROUP_COLLECTIONS:
        members = doc.data.get("members") or {}
        return [f"{doc.collection}/{doc.doc_id}", *members,
                *(f"nik_index/{m['nik_token']}" for m in members.values() if m.get("nik_token"))]
    if doc.collection == "patient_keys":
        return [doc.doc_id, *(doc.data.get("groups") or ()), *(doc.data.get("linked") or ())]
    return [doc.data["group"]]


def _joining(patients: list[Placed], stored_groups: set[str], settings: Settings, stats: Counter
             ) -> tuple[dict[str, set[int]], dict[str, list[int]]]:
    """Per block that not all its records join: the positions that do. A block the screen applies to
    (``pair_screen``: never stored, plain records only, neither a NIK prefix block nor the phone block of a
    stored NIK group's record, whose members under other NIKs the NIK group's decision reads:
    ``_nik_neighbours``; ``_households`` joins those it reads for the others) joins its deciding members;
    a block past its member cap only its first ``block_member_cap`` records (those the screen applies to
    when they are plain), when its contents depend on nothing but the order (module docstring). And, per
    such full block, its records' positions. A block not listed joins all its records."""
    cap = settings.block_member_cap
    members: dict[str, list[int]] = {}
    for position, patient in enumerate(patients):
        for group in patient[3]:
            if group.startswith(DEMOGRAPHIC_GROUPS + "/"):
                members.setdefault(group, []).append(position)
    prefixes = {patient[5] for patient in patients if patient[5]}
    # A stored NIK group's records are not all known here: the phone blocks of its records join all theirs
    # (what its rules read of them: ``_households`` for the others).
    read = prefixes | {patient[6] for patient in patients if patient[6] and patient[3][0] in stored_groups}
    seen: set[str] = set()
    repeated = {patient[2] for patient in patients if patient[2] in seen or seen.add(patient[2])}
    del seen
    joining: dict[str, set[int]] = {}
    full: dict[str, list[int]] = {}
    for group, positions in members.items():
        stats["blocks"] += 1
        stats["block_pairs"] += min(len(positions), cap) * (min(len(positions), cap) - 1) // 2
        stats["largest_block"] = max(stats["largest_block"], len(positions))
        if group in stored_groups or group in read:
            continue    # a NIK group's rules read its members: all of them, whatever the screen says
        if len(positions) > cap:
            if any(patients[p][2] in repeated for p in positions):
                continue
            full[group] = positions
            stats["records_past_cap"] += len(positions) - cap
            positions = positions[:cap]     # the records the live index lets in, in the source's order
        if all(patients[p][4].plain for p in positions):
            found = deciding_members([patients[p][4] for p in positions], settings)
            joining[group] = {positions[i] for i in found}
        else:
            joining[group] = set(positions)
    return joining, full


def _households(patients: list[Placed], settings: Settings) -> list[tuple[str, str]]:
    """(patient, NIK group) pairs the NIK group's rules read: its records' households (their phone blocks'
    members under other NIKs) count only for a record of the group that states no birth date of its own,
    and only a member whose name reaches ``nik_name_match_threshold`` against it
    (``pair_rules._relative_namesake``). Joining the whole phone block instead chained 46 % of a store of
    a million into one component."""
    undated: dict[str, list[str]] = {}            # NIK group -> names of its records without a birth date
    phones: dict[str, set[str]] = {}              # NIK group -> the phone blocks its records read
    for patient in patients:
        if patient[6]:
            phones.setdefault(patient[3][0], set()).add(patient[6])
            if patient[7] and patient[4].name:
                undated.setdefault(patient[3][0], []).append(patient[4].name)
    if not undated:
        return []
    members: dict[str, list[int]] = {}
    wanted = {block for group in undated for block in phones.get(group, ())}
    for position, patient in enumerate(patients):
        for group in patient[3]:
            if group in wanted:
                members.setdefault(group, []).append(position)
    joins = []
    for group, names in undated.items():
        token = group.removeprefix("nik_index/")
        for block in phones.get(group, ()):
            for position in members.get(block, ()):
                key = patients[position][4]
                if key.masks and key.nik_token != token and not key.is_baby and key.name and any(
                        name_similarity(name, key.name) >= settings.nik_name_match_threshold for name in names):
                    joins.append((patients[position][2], group))
    return joins


def split(patients: list[Placed], stored: list[StoredDoc], settings: Settings,
          part_patients: int = PART_PATIENTS, stats: Counter | None = None) -> list[Part]:
    """``patients`` in the source's order -> the parts, in order. ``stats``: filled with the sizes of
    blocks, components and parts (what grows with the store: ``tools.bench partition``)."""
    stats = Counter() if stats is None else stats
    components = _Components()
    joining, full = _joining(patients, {node for doc in stored for node in _stored_links(doc) if "/" in node},
                             settings, stats)
    stats["full_blocks"] = len(full)
    for position, (_, _, patient_id, groups, *_) in enumerate(patients):
        components.join([patient_id, *(g for g in groups if g not in joining or position in joining[g])])
    del joining
    for patient_id, nik_group in _households(patients, settings):
        components.join([patient_id, nik_group])
    for doc in stored:
        components.join(_stored_links(doc))
    members: dict[int, list[int]] = {}            # component -> its patients (positions), in order
    for position, patient in enumerate(patients):
        members.setdefault(components.find(patient[2]), []).append(position)
    stored_of: dict[int, list[StoredDoc]] = {}
    for doc in stored:
        root = components.find(_stored_links(doc)[0])
        if root in members:                       # a component no patient of the source is in stays as stored
            stored_of.setdefault(root, []).append(doc)
    del components
    stats["components"] = len(members)
    stats["largest_component"] = max(map(len, members.values()), default=0)
    parts: list[Part] = []
    part_at = array("l", bytes(8 * len(patients)))   # position -> its part's number
    positions: list[int] = []
    docs: list[StoredDoc] = []
    for root, component in members.items():       # dicts keep insertion order: by first patient
        positions += component
        docs += stored_of.get(root, [])
        if len(positions) >= part_patients:
            for position in positions:
                part_at[position] = len(parts)
            parts.append(_part(len(parts), patients, positions, docs))
            positions, docs = [], []
    if positions:
        for position in positions:
            part_at[position] = len(parts)
        parts.append(_part(len(parts), patients, positions, docs))
    del members, stored_of
    _mark_full(parts, part_at, full, settings.block_member_cap)
    owner: dict[str, int] = {}
    shared: set[str] = set()
    for part in parts:
        shared.update(g for g in part.groups if owner.setdefault(g, part.number) != part.number)
    for part in parts:
        part.shared = frozenset(part.groups & shared)
    stats["parts"] = len(parts)
    stats["largest_part"] = max((len(part.places) for part in parts), default=0)
    stats["shared_blocks"] = len(shared)
    return parts


def _mark_full(parts: list[Part], part_at: array, full: dict[str, list[int]], cap: int) -> None:
    """Each part holding a record past a block's cap learns how many of the block's members it holds: at
    that many, its copy is the full block (``MemoryIndex(full=...)``)."""
    for group, positions in full.items():
        held = Counter(part_at[p] for p in positions[:cap])
        for number in {part_at[p] for p in positions[cap:]}:
            parts[number].full[group] = held[number]


def _part(number: int, patients: list[Placed], positions: list[int], docs: list[StoredDoc]) -> Part:
    positions = sorted(positions)
    groups = {g for p in positions for g in patients[p][3]}
    groups |= {node for doc in docs for node in _stored_links(doc) if "/" in node}
    return Part(number, [(patients[p][0], patients[p][1]) for p in positions], frozenset(groups), docs)
