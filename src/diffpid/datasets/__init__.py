"""Loaders for the papers' datasets, read from files the user has on disk (nothing is downloaded).

- :mod:`.coco_it`: COCO-IT (localization): the published CSV, COCO 2017 val images and instance masks.
- :mod:`.aro`: ARO (compositional understanding): VG-Relation, VG-Attribution, COCO-Order, Flickr30k-Order.
"""
