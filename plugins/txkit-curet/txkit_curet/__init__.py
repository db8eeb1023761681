"""txkit dataset for the CUReT texture database, read exactly as distributed.

This module only registers the name; the loader (and numpy, Pillow) is imported when the dataset is built.
"""

from txkit import hookimpl


@hookimpl
def register_datasets(register):
    register("curet", "txkit_curet.curet:build",
             "CUReT textures, 61 classes (sample01-sample61), .bmp or curetgrey .png; centre crop, resize to 224",
             options="txkit_curet.curet:CuretOptions")
