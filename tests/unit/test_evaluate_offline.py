"""The offline evaluation (tools/calibration/offline.py, matching_score.py): figures equal a hand count, on
hand-made index documents and on a tiny district run through the real decision code."""

from __future__ import annotations

import json
from pathlib import Path

from shared.config import Settings
from tests.fakes import patient_resource
from tools.calibration.matching_score import score_run
from tools.calibration.offline import evaluate_offline, run_offline

SETTINGS = Settings()
NIK = "3201011505900001"          # a man born 1990-05-15
OTHER_NIK = "3201011206850002"    # a man born 1985-06-12
MOTHER_NIK = "3201014103880003"   # a woman born 1988-03-01


def patient(pid: str, name: str, nik: str | None = None, **fields) -> dict:
    return {**patient_resource(SETTINGS, name, nik, **fields), "id": pid}


def truth_of(persons: dict[str, list[str]], cases: dict[str, str]) -> dict:
    patients = {pid: {"person": person, "case": cases.get(pid, "duplicate")}
                for person, ids in persons.items() for pid in ids}
    return {"seed": 0, "patients": patients, "persons": persons}


def group(master: str, duplicates: list[str]) -> dict:
    return {"members": {}, "master": master, "request": {"master": master, "duplicates": duplicates}}


def review(ids: list[str], status: str = "pending", reason: str = "weak-evidence") -> dict:
    return {"patient_ids": ids, "status": status, "reason": reason}


def test_scores_equal_a_hand_count_of_hand_made_decisions():
    # persons: P1 = a, b, c; P2 = d (a mother); P3 = e, f; P4 = g (her baby)
    persons = {"P1": ["a", "b", "c"], "P2": ["d"], "P3": ["e", "f"], "P4": ["g"]}
    truth = truth_of(persons, {"d": "mother", "g": "newborn-nik-ibu"})
    resources = {"a": patient("a", "Budi Santoso", NIK), "b": patient("b", "Budi Santoso", NIK),
                 "c": patient("c", "Budi Santoso"), "d": patient("d", "Sri Lestari", MOTHER_NIK, gender="female"),
                 "e": patient("e", "Agus", OTHER_NIK), "f": patient("f", "Agus"),
                 "g": patient("g", "By. Ny. Sri Lestari", birth="2025-06-01")}
    # decisions: a+b+d merged (d wrongly), then d+g (the baby into its mother, wrongly);
    # pending reviews e+f (one person), c+g (two people); a rejected review c+a does not count
    documents = [group("a", ["b", "d"]), group("d", ["g"])]
    reviews = [review(["e", "f"]), review(["c", "g"], reason="name-mismatch"), review(["a", "c"], "rejected")]
    figures = score_run(truth, resources, documents, reviews, SETTINGS)

    # merged cluster {a, b, d, g}: pairs ab ad ag bd bg dg; true pairs ab ac bc ef
    assert figures["merged_pairs"] == 6 and figures["true_pairs"] == 4
    assert figures["false_pairs"] == 5 and figures["precision"] == round(1 / 6, 4)
    assert figures["baby_twin_false_pairs"] == 3                 # ag, bg, dg
    assert figures["outcomes"] == {"merged": 1, "review": 1, "missed": 2}   # ab / ef / ac, bc
    assert figures["recall_auto"] == 0.25 and figures["recall_with_review"] == 0.5
    assert figures["nik_pairs"] == 1 and figures["recall_auto_nik"] == 1.0  # ab (same NIK); ef: one NIK
    assert figures["review_items"] == 2 and figures["review_pct"] == round(100 * 2 / 7, 2)
    assert figures["review_reasons"] == {"name-mismatch": 1, "weak-evidence": 1}
    assert dict(figures["missed_by_pattern"]) == {"duplicate+duplicate": 2}
    assert dict(figures["false_pairs_by_pattern"]) == {"duplicate+mother": 2, "duplicate+newborn-nik-ibu": 2,
                                                       "mother+newborn-nik-ibu": 1}


def write_district(directory: Path, patients: list[dict], persons: dict[str, list[str]],
                   cases: dict[str, str]) -> dict:
    (directory / "bulk").mkdir(parents=True)
    (directory / "bulk" / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    truth = truth_of(persons, cases)
    (directory / "ground_truth.json").write_text(json.dumps(truth))
    return truth


def test_a_tiny_district_through_the_decision_code_gives_the_hand_count(tmp_path):
    patients = [
        # P1: two records, same NIK, name, birth date and sex: one person by any rule
        patient("p1a", "Budi Santoso", NIK, phone="081234567890"),
        patient("p1b", "BUDI SANTOSO", NIK, phone="081234567890"),
        # P2: another man, another NIK, another name and birth date
        patient("p2", "Maruli Siregar", OTHER_NIK, birth="1985-06-12"),
        # P3: twins on their mother's NIK, different birth orders: never one person
        patient("t1", "By. Ny. Sri Lestari I", birth="2025-06-01", gender="female", nik_ibu=MOTHER_NIK,
                multipleBirthInteger=1),
        patient("t2", "By. Ny. Sri Lestari II", birth="2025-06-01", gender="female", nik_ibu=MOTHER_NIK,
                multipleBirthInteger=2),
        # P5: one person in two records with nothing in common but the person (no NIK, other date and name)
        patient("p5a", "Heru Wibowo", birth="1970-03-03"),
        patient("p5b", "Sukirman", birth="1971-08-09", gender=None),
    ]
    persons = {"P1": ["p1a", "p1b"], "P2": ["p2"], "T1": ["t1"], "T2": ["t2"], "P5": ["p5a", "p5b"]}
    truth = write_district(tmp_path, patients, persons, {"t1": "twin", "t2": "twin"})
    run = run_offline(tmp_path, SETTINGS)
    assert set(run.resources) == {p["id"] for p in patients}
    figures = score_run(truth, run.resources, run.group_docs, run.review_docs, SETTINGS)
    # by hand: true pairs p1a-p1b (merged) and p5a-p5b (missed); nothing else merged
    assert figures["true_pairs"] == 2 and figures["nik_pairs"] == 1
    assert figures["merged_pairs"] == 1 and figures["false_pairs"] == 0 and figures["precision"] == 1.0
    assert figures["recall_auto"] == 0.5 and figures["recall_auto_nik"] == 1.0
    assert figures["outcomes"]["merged"] == 1 and figures["outcomes"]["missed"] == 1
    assert figures["baby_twin_false_pairs"] == 0
    pending = [d for d in run.review_docs if d["status"] == "pending"]
    assert figures["review_items"] == len(pending)


def test_evaluate_offline_generates_runs_and_scores_a_set(tmp_path):
    result = evaluate_offline("lookalike", 3, 120, SETTINGS, tmp_path)
    assert result["set"] == "lookalike" and result["seed"] == 3 and result["patients"] == 120
    assert sum(result["outcomes"].values()) == result["true_pairs"] > 0
    assert 0.0 <= result["precision"] <= 1.0 and result["seconds_matching"] >= 0
    truth = json.loads(next(tmp_path.glob("lookalike-seed3-*/ground_truth.json")).read_text())
    assert truth["params"]["noise"] == "legacy" and truth["params"]["mix"] == "lookalike"
