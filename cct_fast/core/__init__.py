"""The model itself: its configuration (:mod:`.config`), the official names
(:mod:`.names`), the Keras layers (:mod:`.layers`) and the :class:`~.model.CCT` model."""
