"""`python -m herd` is the same as the `herd` command."""

from herd.cli import main

main()
