"""`python -m qscale` → cli.main."""

from qscale.cli import main

if __name__ == "__main__":
    main()
