"""The lead's dashboard: cached snapshots computed by a task, SVG charts, quality metrics, train-on-synthetic runs."""
