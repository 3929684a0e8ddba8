"""Model families (fjft.models.family; one package each, listed in registry.FAMILIES),
the registry that finds and loads them (fjft.models.registry), and the layers they are
built from (layers/)."""
