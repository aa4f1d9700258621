"""After a sweep: promotion to the registry, export, and `sweep evaluate`."""
