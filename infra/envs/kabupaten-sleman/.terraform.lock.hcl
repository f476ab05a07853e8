# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

# Written by hand: the provider registry is not reachable where this was made, so the provider's
# checksums are missing. Run `terraform providers lock -platform=linux_amd64 -platform=darwin_arm64
# -platform=darwin_amd64` in this folder where it is, and commit the hashes it adds (README).
provider "registry.terraform.io/hashicorp/google" {
  version     = "7.40.0"
  constraints = ">= 6.0.0, < 8.0.0"
}
