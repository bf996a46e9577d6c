"""`python -m align` = the `align` console script."""

from align.cli import main

main()
