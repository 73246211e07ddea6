r"""Export a checkpoint into a model folder: ``python -m models.export --task NAME ...``.

ONNX export, torch/ONNX parity check, throughput and manifest, with the training record
carried along (see models.training.export.export_checkpoint). Needs torch.

Examples:
    python -m models.export --task deblur-motion     # re-export the shipped checkpoint
    python -m models.export --task deblur-motion --psf-graph   # add only its known-PSF graph
    python -m models.export --task sr-x4 --checkpoint runs/sr-x4/checkpoint.pt \\
        --note "better on the training-split tuning images"   # promote a fine-tuning run

"""

from models.training.cli import export_main

if __name__ == "__main__":
    export_main()
