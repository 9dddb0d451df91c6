"""Train / encode / evaluate (and later attack / defend / study) as functions over typed configs."""
