"""Product events: catalog, validation, mapping to metrics and spans."""
