"""Evaluate shipped models on held-out images: ``python -m models.evaluate [--task NAME ...]``.

Prints a table per model, writes JSON, markdown and PNG plots to models/training/reports/ and
records the headline metrics in each model's manifest. Needs ONNX Runtime only (no torch).
"""

from models.training.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
