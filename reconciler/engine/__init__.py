"""The engine: the pipeline's stages in order (load, validate, desired state, steps,
plan, apply), each handing a typed value to the next."""
