"""txkit's own datasets, registered through the plugin hook."""

from txkit.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register("synthetic-dld", "txkit.datasets.synthetic_dld:build",
             "embedded procedural CT-texture patches, 7 DLD-like classes; needs no download",
             options="txkit.datasets.synthetic_dld:SyntheticDldOptions")
    register("imagefolder", "txkit.datasets.folder:build",
             "one folder per class (optionally under train/ val/ test/)",
             options="txkit.datasets.folder:FolderOptions")
    register("csv", "txkit.datasets.table:build",
             "CSV with path and label columns, optional split and group (patient) columns; multi-label",
             options="txkit.datasets.table:CsvOptions")
    register("medmnist", "txkit.datasets.medmnist:build", "a MedMNIST .npz file (e.g. pneumoniamnist.npz)",
             options="txkit.datasets.medmnist:MedmnistOptions")
