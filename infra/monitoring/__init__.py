"""Monitoring generated from stack outputs: Prometheus targets (``targets``), alert rules, the Grafana dashboard."""
