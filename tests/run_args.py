"""Trainer command lines for the tests: a synthetic data set and a small model that trains fast."""

# resnet18, batches of 2, no worker processes, no progress bars
QUICK = ["--backbone", "resnet18", "--batch-size", "2", "--workers", "0", "--no-progress"]


def synthetic_data(syn_dir, out, *, train=4, val=2, size=64):
    """Train into `out` on `train` + `val` synthetic images of size x size px (made in syn_dir
    when it has none), at that image size."""
    args = ["--output-dir", str(out), "--synthetic-dir", str(syn_dir)]
    args += ["--synthetic-train", str(train), "--synthetic-val", str(val)]
    return args + ["--synthetic-size", str(size), "--img-size", str(size)]


def synthetic_run(syn_dir, out, *extra, train=4, val=2, size=64):
    """synthetic_data with QUICK's settings, then `extra` (last, so its flags win)."""
    data = synthetic_data(syn_dir, out, train=train, val=val, size=size)
    return data + QUICK + [str(a) for a in extra]
