"""Model families (modules with Config/Model/from_hf/to_hf_state_dict)."""
