"""Name-scorer calibration (``calibrate_names``) and matching evaluation against ground truth
(``evaluate_matching``)."""
