"""Array layer: numpy/scipy only, no torch and no paths."""
