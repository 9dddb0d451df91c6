"""The hashing training loop, its resumable state and recipes."""

from hashguard.training.trainer import TrainResult, derived_seed, train_model

__all__ = ["TrainResult", "derived_seed", "train_model"]
