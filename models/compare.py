"""Compare model folders on training-split images: ``python -m models.compare --task NAME DIR...``.

For choosing between trainings (which one ships) without touching the held-out split. Prints
a table (PSNR / SSIM per level, or classifier accuracy) and can write JSON. ONNX Runtime only.
"""

from models.training.cli import compare_main

if __name__ == "__main__":
    compare_main()
