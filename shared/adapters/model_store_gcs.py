"""The model store in a district's Cloud Storage bucket (port ``shared.ports.model_store``): production.

    gs://<bucket>/<prefix>versions/<version>.json   one object per version, created with
                                                    ifGenerationMatch=0 (never overwritten)
    gs://<bucket>/<prefix>current.json              the pointer, replaced with ifGenerationMatch=<the
                                                    generation read> (a compare-and-set)

Why a bucket rather than Firestore: IAM per bucket lets the match functions only read models and the
retraining job only create objects (``roles/storage.objectCreator`` cannot overwrite or delete, so the job
can add versions but never replace one nor move the pointer), which Firestore's database-wide roles
cannot express; the bucket's object versioning keeps every generation of the pointer (the promotion
history) and it takes the district's CMEK (infra/modules/district/model_store.tf).
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import storage

from shared.ports.model_store import (
    CurrentModel,
    CurrentModelMoved,
    ModelStore,
    ModelVersionExists,
    ModelVersionNotFound,
    check_version_name,
)

POINTER = "current.json"
VERSIONS = "versions/"


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``gs://bucket`` or ``gs://bucket/prefix`` -> (bucket, prefix ending in '/' or '')."""
    if not url.startswith("gs://") or not url[len("gs://"):].split("/", 1)[0]:
        raise ValueError(f"{url!r} is not a gs://bucket[/prefix] URL")
    bucket, _, prefix = url[len("gs://"):].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class GcsModelStore(ModelStore):
    def __init__(self, client: storage.Client, bucket: str, prefix: str = ""):
        self._bucket = client.bucket(bucket)
        self._prefix = prefix

    def describe(self) -> str:
        return f"gs://{self._bucket.name}/{self._prefix}"

    def _version_object(self, version: str) -> str:
        return f"{self._prefix}{VERSIONS}{check_version_name(version)}.json"

    def add(self, version: str, artefact: bytes) -> None:
        blob = self._bucket.blob(self._version_object(version))
        try:
            blob.upload_from_string(artefact, content_type="application/json", if_generation_match=0)
        except exceptions.PreconditionFailed:
            raise ModelVersionExists(f"model version {version} exists in {self.describe()}") from None

    def read(self, version: str) -> bytes:
        try:
            return self._bucket.blob(self._version_object(version)).download_as_bytes()
        except exceptions.NotFound:
            raise ModelVersionNotFound(f"no model version {version} in {self.describe()}") from None

    def versions(self) -> list[str]:
        start = f"{self._prefix}{VERSIONS}"
        names = (blob.name[len(start):] for blob in self._bucket.client.list_blobs(self._bucket, prefix=start))
        return sorted(name[:-len(".json")] for name in names if name.endswith(".json") and "/" not in name)

    def _pointer(self) -> tuple[CurrentModel | None, int]:
        """The pointer and its generation (0: no pointer), read as one generation."""
        blob = self._bucket.get_blob(f"{self._prefix}{POINTER}")
        if blob is None:
            return None, 0
        try:
            return CurrentModel.from_json(blob.download_as_bytes(if_generation_match=blob.generation)), blob.generation
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            raise CurrentModelMoved("the current model changed while it was read") from None

    def current(self) -> CurrentModel | None:
        return self._pointer()[0]

    def move_current(self, to: CurrentModel, *, expected: str | None) -> None:
        now, generation = self._pointer()
        if (now.version if now else None) != expected:
            raise CurrentModelMoved(f"the current model is {now.version if now else 'none'}, not {expected}")
        blob = self._bucket.blob(f"{self._prefix}{POINTER}")
        try:
            blob.upload_from_string(to.to_json(), content_type="application/json", if_generation_match=generation)
        except exceptions.PreconditionFailed:
            raise CurrentModelMoved("another promote moved the current model meanwhile") from None
