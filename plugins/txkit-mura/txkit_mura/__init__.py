"""txkit dataset for MURA v1.1, read exactly as distributed.

This module only registers the name; the loader (and numpy, Pillow) is imported when the dataset is built.
"""

from txkit import hookimpl


@hookimpl
def register_datasets(register):
    register("mura", "txkit_mura.mura:build",
             "MURA v1.1 musculoskeletal radiographs; normal vs abnormal per study, 7 study types, study ids",
             options="txkit_mura.mura:MuraOptions")
