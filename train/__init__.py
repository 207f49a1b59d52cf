"""The command line: one module per command, each its parser and `main`, thin over lgf.

Run from the repository root as `python -m train.<command>`: train, evaluate, grid, weather,
complexity, visualize, demo. An install (`pip install .`) carries this package as `lgf_cli`,
behind the console scripts `lgf-train` and `lgf-eval`; sibling modules are imported relatively
so both names work.
"""
