"""qarac_gui: point-and-click multi-task fine-tuning of pretrained encoders."""

__version__ = "0.1.0"
