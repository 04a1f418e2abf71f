"""`python -m reliability [--budget full|ci] [--only NAME ...]`."""

from reliability.runner import main

main()
