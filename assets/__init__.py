"""Package data: CSS, logo, demo datasets."""
