"""Small helpers: atomic file I/O, reproducibility records."""
