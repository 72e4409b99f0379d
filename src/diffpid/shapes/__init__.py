"""The embedded shapes world and its model: scenes and planted phenomena (:mod:`.world`), the caption
process (:mod:`.captions`), rendering and masks (:mod:`.render`), held-out and swap sets (:mod:`.sets`),
the geometry checker (:mod:`.check`), the model backend (:mod:`.model`) and its coordinate UNet
(:mod:`.coord_unet`). Training lives apart, in :mod:`.training`, as diffusers keeps it in its examples."""
