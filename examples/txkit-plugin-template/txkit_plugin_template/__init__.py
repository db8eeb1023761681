"""A txkit plugin: hook functions that register entries. Keep this module light: txkit imports it to list
plugins, so heavy imports (torch) belong inside the factories, which run only when an entry is used."""

from txkit import hookimpl


@hookimpl
def register_colorizers(register):
    register("edges", "txkit_plugin_template.edges:EdgesColorizer",
             "fixed: gray, Sobel gradient magnitude and Laplacian as the three channels",
             options="txkit:NoOptions")


@hookimpl
def register_datasets(register):
    register("stripes", "txkit_plugin_template.stripes:build",
             "procedural horizontal vs vertical noisy stripes, 2 classes (a template dataset)",
             options="txkit_plugin_template.stripes:StripesOptions")  # a string: imported only when needed
