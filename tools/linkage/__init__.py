"""Training and batch scoring of the matching model with Splink (DuckDB); never deployed."""
