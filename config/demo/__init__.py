"""Demo data for `make run`: a demo user and key, and generations with real MP4 videos."""
