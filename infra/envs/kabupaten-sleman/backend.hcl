bucket = "dedup-terraform-state"
prefix = "dedup/kabupaten-sleman"
