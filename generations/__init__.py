"""generations: the product — rotation videos, their expiry and the zip download."""
