"""The `corral` entry point (pyproject's console script and `python -m corral`).

The commands live in their own modules; `corral.cli.app` holds the group and the registry.
"""

from corral.cli.app import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    main()
