"""The repository as a whole: README and docs, Makefile and .gitignore, the layers."""
