"""vodedge control plane: fleet registry, placement, prefill and steering (not built yet)."""
