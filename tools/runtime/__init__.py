"""The local runtime: the stack (emulators, FHIR server), the functions run as Cloud Functions run them
(``pipeline``), the fault-injecting proxy and the main job (``demo``)."""
