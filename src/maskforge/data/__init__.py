"""Datasets: VOC layout, COCO 2014 and the synthetic set, all read into one Manifest.

Import from the submodules (maskforge.data.manifest, .prepare, ...): this package imports none of
them, so a stage that needs only the manifest does not depend on (and rerun for) every reader.
"""
