"""Model families (fjft.models.family: bert, llama, gpt2), the registry that finds and
loads them (fjft.models.registry), and the layers they are built from (layers/)."""
