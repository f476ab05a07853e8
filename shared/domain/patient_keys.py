"""Which groups a patient is in. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class PatientKeys:
    """Which groups a patient is in (``linked``: NIK groups it joined through a demographic match), so a
    delete or a NIK change finds its old entries."""
    patient_id: str
    groups: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    version: str | None = None
    last_updated: str | None = None
    status: str = "indexed"   # indexed | unmatched
    updated_at: str | None = None

    @property
    def all_groups(self) -> list[str]:
        return [*self.groups, *self.linked]

    def as_member(self) -> dict:
        """The version fields in the shape ``is_newer`` compares."""
        return {"version": self.version, "last_updated": self.last_updated}

    @classmethod
    def from_doc(cls, patient_id: str, doc: Mapping) -> PatientKeys:
        return cls(patient_id, list(doc.get("groups") or []), list(doc.get("linked") or []), doc.get("version"),
                   doc.get("last_updated"), doc.get("status", "indexed"), doc.get("updated_at"))

    def to_doc(self) -> dict:
        return {"groups": list(self.groups), "linked": list(self.linked), "version": self.version,
                "last_updated": self.last_updated, "status": self.status, "updated_at": self.updated_at}
