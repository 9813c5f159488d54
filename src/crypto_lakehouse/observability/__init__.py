"""Metric definitions (one place) and the Prefect metrics exporter."""
