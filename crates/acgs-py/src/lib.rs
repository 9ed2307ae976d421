//! Python bindings: the module `acgs._acgs`.
