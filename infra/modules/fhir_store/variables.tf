# A Healthcare API dataset and FHIR R4 store whose changes are published to the patient-changes topic.

variable "project_id" {
  type = string
}

variable "location" {
  description = "Healthcare API location of the dataset."
  type        = string
}

variable "dataset" {
  type = string
}

variable "fhir_store" {
  type = string
}

variable "notification_topic_id" {
  description = "Full id (projects/P/topics/T) of the patient-changes topic."
  type        = string
}

variable "resource_topic_id" {
  description = "Full id of the resource-changes topic (every change; the late-references function keeps the clinical ones)."
  type        = string
}

variable "labels" {
  type    = map(string)
  default = {}
}
