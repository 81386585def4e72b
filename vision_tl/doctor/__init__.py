"""Data checks: unreadable files, duplicates and leaks, odd images, suspect labels, safe fixes, the cleaner."""
