"""Multi-seed experiment grids (docs/design.md §5): modes x datasets x insert levels x seeds.

- `plan`: `RunSpec` (one run) and `plan_runs`.
- `datasets`: the grid's datasets (synthetic, folders, explicit paths, optional test split).
- `runs`: one run's training subprocess, its recorded flags and its finished-run marker.
- `stats`: mean +- sample std over seeds, the tables' one statistic.
- `robustness`: mPC and rPC of the weather splits (Michaelis et al. 2019).
- `tables`: mean +- sample std over seeds per group, Markdown and CSV.
- `runner`: `Grid` and `run_grid`, the whole pass, and the tables of the finished runs.
"""
