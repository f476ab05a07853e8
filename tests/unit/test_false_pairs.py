"""tools.calibration.false_pairs: every false pair of an offline run, explained with ids and labels only."""

from __future__ import annotations

import json
import re

from shared.config import Settings
from tools.calibration.false_pairs import explain_false_pairs

SETTINGS = Settings(environment="local")


def test_each_false_pair_is_two_persons_merged_with_its_evidence_and_no_patient_data(tmp_path):
    # Seed 3 at 800 records holds same-name twins merged (docs/matching.md, "Red-team set").
    pairs = explain_false_pairs("redteam", 3, 800, tmp_path)
    assert pairs
    truth = json.loads(next(tmp_path.glob("redteam-seed3-800/ground_truth.json")).read_text())
    people = truth["patients"]
    for pair in pairs:
        a, b = pair["patients"]
        assert people[a]["person"] != people[b]["person"]
        assert pair["cases"] == [people[a]["case"], people[b]["case"]]
        assert {"outcome", "reason", "fields", "name_score"} <= set(pair["pair_decision"])
    text = json.dumps(pairs)
    assert not re.search(r"\d{15,}", text)                       # no NIK or phone
    names = {w for line in (tmp_path / "redteam-seed3-800" / "bulk" / "Patient.ndjson").read_text().splitlines()
             for w in json.loads(line)["name"][0]["text"].split() if len(w) > 3}
    assert not [w for w in names if re.search(rf"\b{re.escape(w)}\b", text)]
    assert len(pairs) == len({tuple(p["patients"]) for p in pairs})
