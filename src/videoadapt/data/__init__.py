"""Video decoding and frame sampling, SynthWorld, dataset readers."""
