"""A read-only web viewer over a run store: `pedagogy serve` (`pedagogy.viewer.app`)."""
