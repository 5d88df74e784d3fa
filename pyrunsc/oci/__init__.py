"""pyrunsc as an OCI runtime (runc's command line); docs/oci.md."""
