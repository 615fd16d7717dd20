"""Training recipes the measuring side builds a cell's step from: optimizers and their
implementations (optim), precision recipes (precision), torch.compile housekeeping (compiling).
Measuring side: may import torch, never pandas or seaborn."""
