"""`python3 -m bigtrain ...`: the bigbench command line, also from a checkout without installing."""

from bigtrain.cli import main

if __name__ == "__main__":
    main()
