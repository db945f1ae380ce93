"""Architectures only: plain ``nn.Module`` code, no Hydra, no I/O."""
