"""Reference tables for the synthetic district: one kabupaten, its kecamatan and desa, name pools.

The district is Kabupaten Sleman (DI Yogyakarta). Region codes follow the Kemendagri numbering that a
NIK starts with (``PP KK CC``: province 34, regency 04, kecamatan 01..17). Names are common given names
and family names of several Indonesian naming traditions, written down here from general knowledge.
"""

from __future__ import annotations

PROVINCE_CODE = "34"
REGENCY_CODE = "04"
PROVINCE_NAME = "DI Yogyakarta"
REGENCY_NAME = "Kabupaten Sleman"

# kecamatan code -> (name, postal code, desa names)
KECAMATAN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "01": ("Gamping", "55294", ("Ambarketawang", "Balecatur", "Banyuraden", "Nogotirto", "Trihanggo")),
    "02": ("Godean", "55264", ("Sidoagung", "Sidoarum", "Sidokarto", "Sidoluhur", "Sidomoyo", "Sidomulyo")),
    "03": ("Moyudan", "55563", ("Sumberagung", "Sumberarum", "Sumberrahayu", "Sumbersari")),
    "04": ("Minggir", "55562", ("Sendangagung", "Sendangarum", "Sendangmulyo", "Sendangrejo", "Sendangsari")),
    "05": ("Seyegan", "55561", ("Margoagung", "Margodadi", "Margokaton", "Margoluwih", "Margomulyo")),
    "06": ("Mlati", "55285", ("Sendangadi", "Sinduadi", "Sumberadi", "Tirtoadi", "Tlogoadi")),
    "07": ("Depok", "55281", ("Caturtunggal", "Condongcatur", "Maguwoharjo")),
    "08": ("Berbah", "55573", ("Jogotirto", "Kalitirto", "Sendangtirto", "Tegaltirto")),
    "09": ("Prambanan", "55572", ("Bokoharjo", "Gayamharjo", "Madurejo", "Sambirejo", "Sumberharjo")),
    "10": ("Kalasan", "55571", ("Purwomartani", "Selomartani", "Tamanmartani", "Tirtomartani")),
    "11": ("Ngemplak", "55584", ("Bimomartani", "Sindumartani", "Umbulmartani", "Wedomartani")),
    "12": ("Ngaglik", "55581", ("Donoharjo", "Minomartani", "Sardonoharjo", "Sariharjo", "Sinduharjo")),
    "13": ("Sleman", "55511", ("Caturharjo", "Pandowoharjo", "Triharjo", "Trimulyo", "Tridadi")),
    "14": ("Tempel", "55552", ("Banyurejo", "Lumbungrejo", "Margorejo", "Merdikorejo", "Mororejo")),
    "15": ("Turi", "55551", ("Bangunkerto", "Donokerto", "Girikerto", "Wonokerto")),
    "16": ("Pakem", "55582", ("Candibinangun", "Hargobinangun", "Harjobinangun", "Purwobinangun")),
    "17": ("Cangkringan", "55583", ("Argomulyo", "Glagaharjo", "Kepuharjo", "Umbulharjo", "Wukirsari")),
}

DUSUN = ("Krajan", "Karanganyar", "Jetis", "Ngentak", "Kadisoka", "Sorogenen", "Banjarharjo", "Gondang",
         "Kembang", "Plosokuning", "Tegalrejo", "Pundung", "Ngabean", "Kledokan", "Sawahan", "Nglempong")

# Naming traditions: weight in the district, male given names, female given names, family names
# (empty when the tradition has none; such names are one to three given words).
TRADITIONS: dict[str, dict] = {
    "javanese": {
        "weight": 46,
        "male": ("Slamet", "Sugeng", "Bambang", "Joko", "Budi", "Wahyu", "Agus", "Heru", "Eko", "Dwi",
                 "Tri", "Purwanto", "Susilo", "Hartono", "Widodo", "Wibowo", "Prasetyo", "Nugroho",
                 "Setiawan", "Sutrisno", "Sumarno", "Suparman", "Teguh", "Yudi", "Bayu", "Aji", "Galih",
                 "Haryanto", "Sigit", "Wiyono", "Sukirman", "Tukiman", "Paijo", "Ngadiman", "Raharjo"),
        "female": ("Sri", "Rahayu", "Sumarni", "Suparmi", "Ngatini", "Wulan", "Endang", "Lestari",
                   "Kartika", "Sulastri", "Suryani", "Retno", "Dewi", "Ratna", "Yuliana", "Puji",
                   "Winarti", "Tri", "Dwi", "Wahyuni", "Sukinah", "Tumini", "Paini", "Rini", "Astuti",
                   "Handayani", "Kusumawati", "Sekar", "Ayu", "Utami", "Setyaningsih", "Purwaningsih"),
        "family": (),
    },
    "arabic": {
        "weight": 20,
        "male": ("Muhammad", "Ahmad", "Abdul Rahman", "Abdullah", "Fauzi", "Hidayat", "Rizky", "Faisal",
                 "Hasan", "Husein", "Ilham", "Arif", "Yusuf", "Ibrahim", "Ismail", "Hamzah", "Umar",
                 "Syaiful", "Fajar", "Nur Hidayat", "Zainal", "Anwar", "Rahmat", "Lukman", "Hakim"),
        "female": ("Siti", "Aisyah", "Fatimah", "Nurul", "Khadijah", "Zainab", "Fitri", "Annisa", "Salma",
                   "Nabila", "Laila", "Maryam", "Nur Aini", "Rahmawati", "Hidayati", "Syarifah", "Aminah",
                   "Halimah", "Zahra", "Azizah", "Khoirunnisa", "Latifah", "Mutiara", "Nurhayati"),
        "family": (),
    },
    "sundanese": {
        "weight": 8,
        "male": ("Asep", "Ujang", "Dede", "Cecep", "Ade", "Dadang", "Yayan", "Engkos", "Jajang", "Ujang",
                 "Acep", "Deden", "Iwan", "Hendra", "Agus", "Wawan", "Mamat", "Ridwan", "Kurnia"),
        "female": ("Euis", "Neneng", "Iis", "Entin", "Cucu", "Nenden", "Lilis", "Imas", "Yeti", "Enok",
                   "Tati", "Nining", "Rina", "Wiwin", "Dewi", "Nunung", "Ai", "Kokom"),
        "family": ("Sukmana", "Permana", "Hidayat", "Kusnadi", "Sumantri", "Suryana", "Gunawan", ""),
    },
    "batak": {
        "weight": 5,
        "male": ("Maruli", "Togar", "Parulian", "Horas", "Binsar", "Sahat", "Tigor", "Jonner", "Robert",
                 "Hotman", "Poltak", "Ruhut", "Darwin", "Sabar", "Martua"),
        "female": ("Rosdiana", "Tiurma", "Romauli", "Lasmaria", "Nurmaida", "Rugun", "Hotnida", "Debora",
                   "Marta", "Sondang", "Lamria", "Erlina", "Rotua"),
        "family": ("Siregar", "Nasution", "Simanjuntak", "Sitompul", "Hutapea", "Lubis", "Harahap",
                   "Pane", "Sinaga", "Situmorang", "Panjaitan", "Manurung", "Simatupang", "Tambunan",
                   "Hutagalung", "Sihombing", "Pardede", "Silalahi"),
    },
    "minang": {
        "weight": 5,
        "male": ("Yusrizal", "Afrizal", "Zulkifli", "Nofrizal", "Syafrizal", "Hendri", "Yuhendri",
                 "Zulfikar", "Irwan", "Datuk", "Rusli", "Erizal", "Novrianto", "Fadli"),
        "female": ("Yenni", "Desfitri", "Elfi", "Nofriyanti", "Yusnidar", "Rosmaniar", "Ernawati",
                   "Fitriani", "Mardiah", "Yulnida", "Sofiarni", "Delvi"),
        "family": ("Chaniago", "Piliang", "Tanjung", "Koto", "Sikumbang", "Caniago", "Jambak", ""),
    },
    "bugis": {
        "weight": 4,
        "male": ("Andi Baso", "Andi Muhammad", "Arsyad", "Baharuddin", "Syamsuddin", "Jufri", "Amiruddin",
                 "Nasrullah", "Sudirman", "Haeruddin", "Irfan", "Akbar"),
        "female": ("Andi Besse", "Andi Tenri", "Hasnah", "Nurhaedah", "Hamsiah", "Haslinda", "Sitti",
                   "Rosmawati", "Jumriah", "Megawati", "Irmawati"),
        "family": ("Daeng", "Mappanyukki", "Pawellangi", "Rahim", "Latif", ""),
    },
    "balinese": {
        "weight": 4,
        # Birth-order names with the gender particle; the given name follows.
        "male": ("I Wayan", "I Made", "I Nyoman", "I Ketut", "I Putu", "I Gede", "I Kadek", "I Komang"),
        "female": ("Ni Wayan", "Ni Made", "Ni Nyoman", "Ni Ketut", "Ni Putu", "Ni Kadek", "Ni Komang",
                   "Ni Luh"),
        "family": ("Sudarsana", "Suardana", "Wirawan", "Artawan", "Sukadana", "Mahendra", "Ariani",
                   "Sukarini", "Suastini", "Widiastuti", "Purnamasari", "Astawa"),
    },
    "chinese": {
        "weight": 8,
        "male": ("Budi", "Hendra", "Yohanes", "Andreas", "Steven", "Kevin", "Michael", "Sugianto", "Hengky",
                 "Rudy", "Wilson", "Tommy", "Antonius", "Fransiskus", "Hartanto"),
        "female": ("Lenny", "Lanny", "Susan", "Meliana", "Yuliani", "Fenny", "Stephanie", "Cynthia",
                   "Linda", "Mei Ling", "Veronika", "Cindy", "Olivia", "Ratna"),
        "family": ("Wijaya", "Gunawan", "Halim", "Santoso", "Tan", "Lim", "Liem", "Oei", "Kurniawan",
                   "Salim", "Susanto", "Hartono", "Tjahjadi", "Setiadi", "Tanoto", "Widjaja"),
    },
}

# Second given words the Javanese and Arabic-derived traditions add (e.g. "Sri Rahayu Lestari").
SECOND_GIVEN_MALE = ("Santoso", "Pratama", "Saputra", "Nugraha", "Kurniawan", "Hidayat", "Wijaya",
                     "Prasetya", "Ramadhan", "Firmansyah", "Setiawan", "Susanto", "Riyadi", "Hartanto")
SECOND_GIVEN_FEMALE = ("Lestari", "Rahayu", "Wati", "Ningsih", "Sari", "Handayani", "Purnamasari",
                       "Wulandari", "Anggraini", "Safitri", "Kurniasih", "Maharani", "Oktaviani")

# Titles legacy systems put into the name field.
TITLES_MALE = ("Tn.", "Bpk.", "Sdr.", "H.")
TITLES_FEMALE = ("Ny.", "Nn.", "Sdri.", "Ibu", "Hj.")
TITLES_CHILD = ("An.",)
DEGREES = ("S.Pd", "S.Kom", "S.E.", "Amd.Kep", "S.H.", "Drs.", "Ir.", "M.Farm", "S.T.")

# Spelling variants seen in legacy data: Muhammad/Muhamad/Moh./M., old (pre-1972) spelling, etc.
SPELLING_VARIANTS: dict[str, tuple[str, ...]] = {
    "Muhammad": ("Muhamad", "Mohammad", "Moh.", "M.", "Muhammmad"),
    "Ahmad": ("Achmad", "Akhmad", "Ahmat"),
    "Siti": ("Sity", "Sitti"),
    "Sitti": ("Siti",),
    "Joko": ("Djoko",),
    "Yuliana": ("Juliana", "Yulianah"),
    "Sutrisno": ("Soetrisno",),
    "Sumarno": ("Soemarno",),
    "Suparman": ("Soeparman",),
    "Rizky": ("Rizki", "Risky"),
    "Fitri": ("Fitriyah",),
    "Yusuf": ("Yusup",),
    "Aisyah": ("Aisah", "Aisya"),
    "Nurul": ("Nurul", "Nurl"),
    "Hidayat": ("Hidajat",),
    "Setiawan": ("Setyawan",),
    "Wahyuni": ("Wahyunie",),
    "Widjaja": ("Wijaya",),
    "Rahmat": ("Rachmat",),
    "Khadijah": ("Kadijah", "Hadijah"),
    "Fatimah": ("Fatima",),
    "Syaiful": ("Saiful",),
}

# Clinical vocabularies (codes from public code systems; display texts in Indonesian where usual).
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

VITALS = (
    # code, display, unit, low, high
    ("8867-4", "Heart rate", "/min", 60, 110),
    ("8310-5", "Body temperature", "Cel", 36.0, 39.5),
    ("29463-7", "Body weight", "kg", 40, 95),
    ("8302-2", "Body height", "cm", 145, 180),
    ("9279-1", "Respiratory rate", "/min", 14, 26),
)
LAB_TESTS = (
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 260),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 9, 17),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 290),
    ("3084-1", "Urate [Mass/volume] in Serum or Plasma", "mg/dL", 3, 9),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 40, 400),
)
CONDITIONS = (
    ("I10", "Essential (primary) hypertension", True),
    ("E11.9", "Type 2 diabetes mellitus without complications", True),
    ("J06.9", "Acute upper respiratory infection, unspecified", False),
    ("A09", "Diarrhoea and gastroenteritis of presumed infectious origin", False),
    ("K30", "Functional dyspepsia", False),
    ("A15.0", "Tuberculosis of lung", True),
    ("A90", "Dengue fever [classical dengue]", False),
    ("J45.9", "Asthma, unspecified", True),
    ("R50.9", "Fever, unspecified", False),
    ("L30.9", "Dermatitis, unspecified", False),
    ("M79.1", "Myalgia", False),
    ("Z34.9", "Supervision of normal pregnancy, unspecified", False),
)
PROCEDURES = (
    ("29303009", "Electrocardiographic procedure"),
    ("225358003", "Wound care"),
    ("18949003", "Change of dressing"),
    ("386053000", "Evaluation procedure"),
    ("5880005", "Physical examination procedure"),
)
MEDICATIONS = ("Amlodipin 5 mg tablet", "Metformin 500 mg tablet", "Paracetamol 500 mg tablet",
               "Amoksisilin 500 mg kapsul", "Oralit serbuk", "Antasida DOEN tablet", "Salbutamol 2 mg tablet",
               "Captopril 25 mg tablet", "Vitamin B kompleks tablet", "Tablet tambah darah")
VACCINES = (("19", "BCG"), ("08", "Hepatitis B, pediatric"), ("10", "IPV"), ("03", "MMR"),
            ("20", "DTaP"), ("208", "COVID-19, mRNA"))
ALLERGENS = (("764146007", "Penicillin"), ("91935009", "Allergy to peanut"), ("300913006", "Shellfish allergy"),
             ("293586001", "Allergy to aspirin"))
