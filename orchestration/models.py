"""Models of the orchestration app."""
