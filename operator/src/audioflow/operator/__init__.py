"""audioflow Kubernetes operator; built in its own issue."""
