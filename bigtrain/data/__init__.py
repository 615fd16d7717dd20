"""Real training data for the time-to-target protocol (`bigbench converge`).

- `datasets.py`: small data sets that ship inside packages (scikit-learn's digits, wine and
  breast-cancer: no downloads), the seed net's synthetic regression and a generated sequence task,
  each split once into a training and a held-out part by a fixed seed;
- `loader.py`: the loader (a torch DataLoader: shuffled mini-batches, epoch after epoch);
- `tasks.py`: which model trains on which data, to which held-out target, and why.

The measuring side only: torch is imported here; the analysing side never imports this package.
"""
