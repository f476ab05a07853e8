"""The review workbench counts the queue per reason from one list (``shared.domain.review.REVIEW_REASONS``):
every reason the matching rules give a review item must be on it, or the queue shows those items only in
its total. Generated districts of every noise model, decided offline, are the rules' real output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import Settings
from shared.domain.review import REVIEW_REASONS
from tools.calibration.offline import run_offline, write_set

DOMAIN = Path(__file__).resolve().parents[2] / "shared" / "domain"


@pytest.mark.parametrize("set_name", ["default", "legacy", "lookalike", "redteam"])
def test_every_reason_a_district_gets_is_on_the_list(set_name, tmp_path):
    settings = Settings()
    run = run_offline(write_set(set_name, 1, 1000, settings, tmp_path), settings)
    reasons = {item["reason"] for item in run.review_docs}
    assert reasons and reasons <= set(REVIEW_REASONS), reasons - set(REVIEW_REASONS)


def test_every_review_reason_written_in_the_rules_is_on_the_list():
    written = set()
    for path in DOMAIN.glob("*.py"):
        text = path.read_text()
        written |= set(re.findall(r'(?:decide|Decision)\(REVIEW, "([a-z-]+)"', text))
        written |= set(re.findall(r'\("review", "([a-z-]+)"\)', text))
        written |= set(re.findall(r'ReviewProposal\([^,]+, "([a-z-]+)"', text))
    assert len(written) > 5 and written <= set(REVIEW_REASONS), written - set(REVIEW_REASONS)
