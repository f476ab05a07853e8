import pytest

from shared.config import Settings
from shared.names import NormalisedName, name_similarity, normalise_name, patient_name
from tools.calibration.calibrate_names import PAIRS_PATH, generate_pairs, read_pairs


def text(raw: str) -> str:
    return normalise_name(raw).text


# --- normalisation -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("BUDI SANTOSO", "budi santoso"),
    ("  budi   santoso ", "budi santoso"),
    ("Budi-Santoso.", "budi santoso"),
    ("Dédé Kurniasih", "dede kurniasih"),
    ("Ma'ruf Amin", "maruf amin"),
    ("Santoso, Budi", "santoso budi"),
])
def test_case_accents_punctuation_and_whitespace(raw, expected):
    assert text(raw) == expected


@pytest.mark.parametrize("raw", [
    "Tn. Budi Santoso", "Tn Budi Santoso", "TN. BUDI SANTOSO", "Sdr. Budi Santoso", "Bpk. Budi Santoso",
    "H. Budi Santoso", "H Budi Santoso", "dr. Budi Santoso", "Dr. Budi Santoso", "drg. Budi Santoso",
    "Drs. Budi Santoso", "Ir. Budi Santoso", "Prof. Dr. Ir. H. Budi Santoso", "An. Budi Santoso",
    "Budi Santoso, S.Kom", "Budi Santoso S.Kom", "Budi Santoso, S. Kom.", "Budi Santoso SKom",
    "Budi Santoso, S.Pd", "Budi Santoso, S.E.", "Budi Santoso SE", "Budi Santoso, S.H., M.H.",
    "Budi Santoso, M.Farm", "Budi Santoso M.Kes", "Budi Santoso, SKM", "Budi Santoso, Amd.Keb",
    "Budi Santoso, A.Md.Keb", "dr. Budi Santoso, Sp.PD", "Budi Santoso, S.Kep., Ners",
])
def test_titles_before_and_after_with_or_without_dots(raw):
    assert text(raw) == "budi santoso"


@pytest.mark.parametrize("raw, expected", [
    ("Ny. Siti Aminah", "siti aminah"), ("Ny. Hj. Dra. Siti Aminah, M.Kes", "siti aminah"),
    ("Nn. Dewi Lestari", "dewi lestari"), ("Sdri Dewi Lestari", "dewi lestari"),
    ("Hj. Dewi Lestari", "dewi lestari"), ("Dra. Dewi Lestari", "dewi lestari"),
])
def test_honorifics_for_women(raw, expected):
    assert text(raw) == expected


def test_title_like_words_without_a_dot_stay_when_they_can_be_names():
    assert text("An Nisa Rahma") == "an nisa rahma"   # "An." = anak, but "An Nisa" is a name
    assert text("Haji") == "haji"                      # never strip a name down to nothing


@pytest.mark.parametrize("variant", [
    "Muhammad Yusuf", "Muhamad Yusuf", "Mohammad Yusuf", "Mohamad Yusuf", "Muhammed Yusuf", "Moh. Yusuf",
    "Moch. Yusuf", "Mochammad Yusuf", "M. Yusuf", "MOCH YUSUF", "Muh. Yusuf", "Muhammad Jusuf",
    "Muhammad Yusup", "Muhammad Joesoef",
])
def test_muhammad_and_yusuf_variants_share_one_form(variant):
    assert text(variant) == text("Muhammad Yusuf")


@pytest.mark.parametrize("a, b", [
    ("Siti", "Sity"), ("Siti", "Sitti"), ("Nur", "Noer"), ("Soekarno", "Sukarno"), ("Djoko", "Joko"),
    ("Tjahjono", "Cahyono"), ("Soejono", "Suyono"), ("Achmad", "Ahmad"), ("Chairul", "Khairul"),
    ("Choirul", "Khairul"), ("Chadidjah", "Khadijah"), ("Sjahrir", "Syahrir"), ("Syaiful", "Saiful"),
    ("Ramadhan", "Ramadan"), ("Rizqi", "Rizki"), ("Rizky", "Rizki"), ("Zaenal", "Zainal"),
    ("Abdoel", "Abdul"), ("Liem", "Lim"), ("Njoman", "Nyoman"), ("Jahja", "Yahya"),
    ("Abdurrahman", "Abdul Rahman"), ("Abdulrahman", "Abdul Rahman"),
])
def test_spelling_variants_map_to_one_token(a, b):
    assert text(a) == text(b)


@pytest.mark.parametrize("a, b", [
    ("Nur Hidayah", "Nurul Hidayah"),   # Nurul is its own name
    ("Yuli Astuti", "Juli Astuti"),     # a bare j is not rewritten: Yuli and Juli are two names
    ("Candra", "Cendra"), ("Abdullah", "Abdul Lah"),
])
def test_different_names_are_not_merged_by_normalisation(a, b):
    assert text(a) != text(b)


def test_balinese_sex_markers_are_dropped_only_before_balinese_name_words():
    assert text("I Wayan Sudarsana") == text("Wayan Sudarsana") == "wayan sudarsana"
    assert text("Sudarsana, I Wayan") == "sudarsana wayan"
    assert text("Ni Luh Putu Ayu") == "luh putu ayu"
    assert text("Liem Giok Ni") == "lim giok ni"


@pytest.mark.parametrize("raw, mother", [
    ("By. Ny. Sari", "sari"), ("Bayi Ny. Sari", "sari"), ("Bayi Sari", "sari"), ("By Sari", "sari"),
    ("BY NY SARI", "sari"), ("Bayi Ny. Hj. Sari Dewi, S.Pd", "sari dewi"),
    ("By. Ny. Sity Aminah", "siti aminah"),
])
def test_baby_names(raw, mother):
    name = normalise_name(raw)
    assert name.is_baby and name.mother == mother
    assert name.tokens[0] == "bayi"


def test_adult_names_are_not_babies():
    name = normalise_name("Sari Dewi")
    assert name == NormalisedName("sari dewi", ("sari", "dewi"), False, None)


@pytest.mark.parametrize("first, second", [
    ("By. Ny. Sari I", "By. Ny. Sari II"), ("Bayi 1 Ny. Sari", "Bayi 2 Ny. Sari"),
    ("By. Ny. Sari (1)", "By. Ny. Sari (2)"), ("Bayi Ny. Sari Kembar 1", "Bayi Ny. Sari Kembar 2"),
    ("Bayi Laki-laki Ny. Sari", "Bayi Perempuan Ny. Sari"),
])
def test_twins_keep_their_markers_and_never_look_alike(first, second):
    a, b = normalise_name(first), normalise_name(second)
    assert a.mother == b.mother == "sari"
    assert a.text != b.text
    assert name_similarity(first, second) == 0.0


def test_the_same_twin_written_differently_matches():
    assert text("Bayi Ny. Sari I") == text("By Ny Sari (1)") == text("Bayi 1 Ny. Sari") == "bayi sari 1"
    assert name_similarity("Bayi Ny. Sari II", "BY. NY. SARI 2") == 100.0


def test_empty_and_non_text_names():
    assert normalise_name("") == NormalisedName("", (), False, None)
    assert normalise_name(None) == NormalisedName("", (), False, None)
    assert name_similarity("", "Budi") == 0.0


# --- similarity ------------------------------------------------------------------------------------
def test_similarity_is_symmetric_and_bounded():
    cases = [("Budi Santoso", "Andi Santoso"), ("Siti Aminah", "Siti Aminah Putri"), ("M. Yusuf", "Yusuf")]
    for a, b in cases:
        assert name_similarity(a, b) == pytest.approx(name_similarity(b, a))
        assert 0.0 <= name_similarity(a, b) <= 100.0


def test_similarity_ignores_titles_case_order_and_variants():
    assert name_similarity("Tn. MUHAMMAD YUSUF, S.Kom", "Jusuf, Moch.") == 100.0
    assert name_similarity("Nur Hayati", "Nurhayati") == 100.0


def test_baby_never_resembles_an_adult_especially_the_mother():
    assert name_similarity("By. Ny. Sari", "Sari") == 0.0
    assert name_similarity("Bayi Ny. Dewi Lestari", "Ny. Dewi Lestari") == 0.0


def test_thresholds_order_typical_cases():
    settings = Settings()
    match, review = settings.name_match_threshold, settings.name_review_threshold
    assert name_similarity("Ny. Siti Aminah", "SITI AMINAH") >= match
    assert review <= name_similarity("Budi Santoso", "Budi Santosa") < match      # a typo: a human decides
    assert review <= name_similarity("Siti Aminah", "Siti Aminah Putri") < match  # one extra token
    assert name_similarity("Budi Santoso", "Rina Santoso") < review                # siblings


# --- calibration -------------------------------------------------------------------------------------
def test_labelled_set_is_large_mixed_and_reproducible():
    pairs = read_pairs(PAIRS_PATH)
    assert len(pairs) >= 300
    assert {p.label for p in pairs} == {"same", "different"}
    assert sum(p.label == "different" for p in pairs) >= 100
    assert [(p.a, p.b, p.label) for p in pairs] == [(p.a, p.b, p.label) for p in generate_pairs()]


def test_match_threshold_gives_no_false_match_on_the_labelled_set():
    threshold = Settings().name_match_threshold
    false_matches = [(p.a, p.b) for p in read_pairs(PAIRS_PATH)
                     if p.label == "different" and name_similarity(p.a, p.b) >= threshold]
    assert false_matches == []


def test_review_threshold_sends_no_same_pair_to_different():
    threshold = Settings().name_review_threshold
    missed = [(p.a, p.b) for p in read_pairs(PAIRS_PATH)
              if p.label == "same" and name_similarity(p.a, p.b) < threshold]
    assert missed == []


# --- FHIR ---------------------------------------------------------------------------------------------
def test_patient_name_prefers_official_then_usual_then_first():
    patient = {"name": [{"use": "nickname", "text": "Ucok"}, {"use": "usual", "given": ["Budi"]},
                        {"use": "official", "given": ["Budi", "Hartono"], "family": "Santoso",
                         "prefix": ["Tn."]}]}
    assert patient_name(patient) == "Budi Hartono Santoso"
    patient["name"].pop()
    assert patient_name(patient) == "Budi"
    patient["name"].pop()
    assert patient_name(patient) == "Ucok"


def test_patient_name_uses_text_when_present():
    patient = {"name": [{"use": "official", "text": "  Ny.  Siti Aminah ", "given": ["Siti"], "family": "A"}]}
    assert patient_name(patient) == "Ny. Siti Aminah"


@pytest.mark.parametrize("patient", [{}, {"name": []}, {"name": [{}]}, {"name": None}, None])
def test_patient_name_is_empty_without_a_name(patient):
    assert patient_name(patient) == ""


def test_normalising_twice_changes_nothing_so_stored_normalised_names_compare_the_same():
    # The matching index stores normalised text and compares it with name_similarity later.
    for pair in read_pairs(PAIRS_PATH):
        for raw in (pair.a, pair.b):
            once = normalise_name(raw)
            twice = normalise_name(once.text)
            assert (twice.text, twice.is_baby, twice.mother) == (once.text, once.is_baby, once.mother), raw
        assert name_similarity(normalise_name(pair.a).text, normalise_name(pair.b).text) == pytest.approx(
            name_similarity(pair.a, pair.b))


# --- rules added from the matching evaluation's missed pairs (synthetic names) ---------------------
@pytest.mark.parametrize("raw, expected", [
    ("Ratna, Drs.", "ratna"), ("Wulan Sari, Ir.", "wulan sari"), ("Agus Salim, Drs. H.", "agus salim"),
    ("Santoso, Budi", "santoso budi"),        # a name after the comma stays
    ("Ratna Drs", "ratna drs"),               # a prefix title counts at the end only after a comma
])
def test_prefix_titles_written_after_a_comma_are_titles(raw, expected):
    assert text(raw) == expected


def test_several_pieces_form_a_title_only_when_that_title_has_several_parts():
    assert text("H. Aji Nugroho") == "aji nugroho"          # "H." then the name Aji, not "Haji"
    assert text("H Aji Nugroho") == "aji nugroho"
    assert text("Budi Santoso, S. Kom.") == text("K. H. Budi Santoso") == "budi santoso"


@pytest.mark.parametrize("a, b", [("Wahyunie", "Wahyuni"), ("Rudie Hartono", "Rudi Hartono"),
                                  ("Liem Swie Hong", "Lim Swi Hong")])
def test_final_dutch_ie_is_i(a, b):
    assert text(a) == text(b)


@pytest.mark.parametrize("a, b", [("Susilo Setyawan", "Susilo Setiawan"), ("Suryani", "Suriani"),
                                  ("Dyah Ayu", "Diah Ayu")])
def test_y_or_i_between_consonant_and_vowel_score_as_equal(a, b):
    assert name_similarity(a, b) == 100.0


def test_y_as_i_leaves_initial_y_and_typos_alone():
    assert name_similarity("Yuli Astuti", "Juli Astuti") < 97.0      # still two names
    assert name_similarity("Heru Cahyono", "Heru Chayono") == pytest.approx(88.5, abs=0.1)
