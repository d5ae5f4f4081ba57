"""`python -m cli`: the `crmsync` command."""

from cli.main import main

if __name__ == "__main__":
    main()
