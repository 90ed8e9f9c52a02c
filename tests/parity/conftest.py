"""Parity tests need torch; torch is imported once per worker, single-threaded for reproducibility."""
import torch

torch.set_num_threads(1)
