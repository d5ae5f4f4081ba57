"""The `crmsync` command line (README.md lists its commands)."""
