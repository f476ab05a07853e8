bucket = "dedup-terraform-state"
prefix = "dedup/kota-yogyakarta"
