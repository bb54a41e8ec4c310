"""Base images for templates: built-in Debian/Python/Node bases, imported OCI/docker-save archives, registry pulls."""
