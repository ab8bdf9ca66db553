"""Projects, members and roles, settings and review policy, and the label schema (labels, attribute dimensions)."""
