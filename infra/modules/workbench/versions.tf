terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source = "hashicorp/google"
      # iap_enabled on google_cloud_run_v2_service and google_iap_web_cloud_run_service_iam_member.
      version = ">= 6.30, < 8.0"
    }
  }
}
