"""audioflow."""
