"""What every part of the package uses, below all of them: writing user files whole or not at
all and locking a folder (:mod:`.files`), comparing two computations of one thing
(:mod:`.compare`), and importing an optional package (:mod:`.optional`)."""
