"""Training pywavernn models with PyTorch: the PyTorch twin of the model (`training.model.WaveRNN`) and the
export to the pywavernn model file (`training.export.export_model`).

Only this package imports torch; it uses pywavernn's public API and model-file module, never the kernels.
"""
