"""Non-PyTorch framework backends behind the `framework` axis (see `bigtrain.frameworks.base`)."""
