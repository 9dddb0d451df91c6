"""The jobs behind the commands, as functions over typed configs: train, encode, evaluate, attack and the study.

:func:`hashguard.pipeline.checkpoint.open_checkpoint` is the one place a trained checkpoint is opened with its
data; the commands under :mod:`hashguard.commands` only parse arguments and call these functions.
"""
