"""What people use: the command line, the web service, reports, overlays and segment files."""
