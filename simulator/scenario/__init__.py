"""The scenario: the YAML schema validated once at the edge, the resolved system, and one run."""
