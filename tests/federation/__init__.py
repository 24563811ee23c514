"""Regions in one federation (R-54), each deployment a separate gunicorn process: `harness`."""
