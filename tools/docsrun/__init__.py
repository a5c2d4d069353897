"""Executable docs: every example in README.md and docs/*.md that says it runs is run against a
real `beast serve --sim` (and on Redis + PostgreSQL where it says so), and what the page
claims of the answer is checked; the rest is checked for syntax. See docs/contributing.md."""
