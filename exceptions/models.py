"""Models of the exceptions app."""
