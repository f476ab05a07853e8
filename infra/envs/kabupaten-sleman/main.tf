# Kabupaten Sleman: a regency running its own HAPI FHIR server. Only the topics and functions are
# created; the server's rest-hook Subscription calls subscription-relay (README, "Deploying a district").
# State: gs://<state bucket>/dedup/kabupaten-sleman (backend.hcl).

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
  project = "dedup-kabupaten-sleman"
  region  = "asia-southeast2"
}

module "district" {
  source        = "../../modules/district"
  project_id    = "dedup-kabupaten-sleman"
  district      = "kabupaten-sleman"
  source_object = var.source_object

  workbench_image = var.workbench_image
  workbench_roles = {
    "data.manager@dinkes.example.go.id"   = "supervisor"
    "registry.clerk@dinkes.example.go.id" = "reviewer"
  }

  fhir_mode                  = "external"
  external_fhir_base_url     = "http://10.20.0.5:8080/fhir"
  external_fhir_token_secret = "dedup-fhir-token"
  vpc_connector              = "projects/dedup-kabupaten-sleman/locations/asia-southeast2/connectors/dedup-fhir"
  # The HAPI host sends a Google ID token for the relay's URL (output relay_audience) as this account.
  relay_allowed_callers = ["hapi-fhir@dedup-kabupaten-sleman.iam.gserviceaccount.com"]

  # Regency data comes mostly from puskesmas (SIMPUS) and carries more typing noise. Thresholds stay
  # at the calibrated defaults (shared/config.py) until a calibration on Sleman's own pairs says otherwise.
  source_priority = ["simpus", "simrs", "sikda", "pcare", "lab"]
  alert_emails    = ["dedup-alerts@example.org"]
}

output "district" {
  value = module.district
}
