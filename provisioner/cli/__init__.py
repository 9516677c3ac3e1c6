"""The ``provisioner`` command line: thin wrappers over the services."""
