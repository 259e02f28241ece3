"""`python -m qscale` → cli.run (the console script)."""

from qscale.cli import run

if __name__ == "__main__":
    run()
