"""Measuring: cost of models (parameters, FLOPs, time, memory) and, later, the paradigm x task matrix."""
