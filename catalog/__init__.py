"""What can be rented and deployed: GPU types, regions, the model catalog and inference presets
(later: provider offers and the provider drivers that produce them)."""
