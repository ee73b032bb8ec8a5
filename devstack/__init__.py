"""Development and test tooling: starts the local system. Never imported by core, web or worker."""
