"""Training the embedded shapes model (:mod:`.train`) and the parse pretraining of its text encoder (:mod:`.parse`)."""
