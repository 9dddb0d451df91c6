"""The hashing training loop, its resumable state and recipes."""

from hashguard.training.loop import FitResult, LoopSettings, Plan, StepOutput, TrainingStep, fit
from hashguard.training.trainer import TrainResult, derived_seed, train_model

__all__ = [
    "FitResult",
    "LoopSettings",
    "Plan",
    "StepOutput",
    "TrainResult",
    "TrainingStep",
    "derived_seed",
    "fit",
    "train_model",
]
