"""Model packs and the face engine that runs them (detect, align, quality, embed)."""
