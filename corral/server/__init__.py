"""The HTTP side of Corral: the REST control plane and the sandbox gateway."""
