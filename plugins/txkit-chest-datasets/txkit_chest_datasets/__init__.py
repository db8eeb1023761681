"""txkit datasets for chest radiographs, read exactly as distributed.

This module only registers names; the loaders (and numpy, Pillow) are imported when a dataset is built.
"""

from txkit import hookimpl


@hookimpl
def register_datasets(register):
    register("chexpert", "txkit_chest_datasets.chexpert:build",
             "CheXpert-v1.0-small (train.csv/valid.csv); 5 or 14 observations, uncertainty policies per label",
             options="txkit_chest_datasets.options:ChexpertOptions")
    register("chestxray14", "txkit_chest_datasets.chestxray14:build",
             "NIH ChestX-ray14 (Data_Entry_2017.csv, official train_val/test lists); 14 findings, multi-label",
             options="txkit_chest_datasets.options:ChestXray14Options")
    register("montgomery", "txkit_chest_datasets.tb:build_montgomery",
             "Montgomery County TB set (MontgomerySet/CXR_png); normal vs TB from the file name, 70/20/10",
             options="txkit_chest_datasets.options:TbOptions")
    register("shenzhen", "txkit_chest_datasets.tb:build_shenzhen",
             "Shenzhen TB set (ChinaSet_AllFiles/CXR_png); normal vs TB from the file name, 70/20/10",
             options="txkit_chest_datasets.options:TbOptions")
