"""Synthetic district dataset: generator (``generate``) and FHIR loader (``load``); CLI in ``__main__``."""
