"""The model of a run: encoder + task head (:class:`TaskModel`), built from a config or loaded back from a run
folder, the split data it reads, the batches it takes and its evaluation. Training (``videoadapt.train``) and
inference (``videoadapt.inference``) both stand on this layer; it knows nothing of the training loop."""
