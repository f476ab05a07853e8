# Kota Yogyakarta: a city district with its own Healthcare API FHIR store, created here.
# State: gs://<state bucket>/dedup/kota-yogyakarta (backend.hcl).

terraform {
  required_version = ">= 1.5"
  backend "gcs" {}
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}

variable "workbench_image" {
  description = "Review workbench image by digest (Cloud Build, workbench/Dockerfile)."
  type        = string
  default     = null
}

variable "source_object" {
  description = "Source zip uploaded by Cloud Build (infra/package_source.py)."
  type        = string
}

provider "google" {
  project = "dedup-kota-yogyakarta"
  region  = "asia-southeast2"
}

module "district" {
  source        = "../../modules/district"
  project_id    = "dedup-kota-yogyakarta"
  district      = "kota-yogyakarta"
  source_object = var.source_object

  workbench_image = var.workbench_image
  workbench_roles = {
    "data.manager@dinkes.example.go.id"   = "supervisor"
    "registry.clerk@dinkes.example.go.id" = "reviewer"
  }

  fhir_mode    = "create"
  fhir_dataset = "satusehat-kota-yogyakarta"
  fhir_store   = "patients"

  # Thresholds: the calibrated defaults (shared/config.py); set one here only above its floor, or with
  # allow_thresholds_below_calibration after a calibration on this district's labelled pairs.
  nik_system   = "https://fhir.kemkes.go.id/id/nik"
  alert_emails = ["dedup-alerts@example.org"]
}

output "district" {
  value = module.district
}
