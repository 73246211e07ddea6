r"""Train, fine-tune or resume one model: ``python -m models.train --task NAME ...``.

Examples:
    python -m models.train --task deblur-defocus --data ../shared/data/he_tiles \\
        ../shared/data/nuclei/gbm40/images --steps 2000 --minutes 16 --out models/zoo/deblur-defocus
    python -m models.train --task deblur-defocus --data /lab/sharp_tiles \\
        --init-from models/zoo/deblur-defocus/checkpoint.pt --steps 300 --lr 2e-4 --out my-defocus

"""

from models.training.cli import train_main

if __name__ == "__main__":
    train_main()
