"""The web service: REST API and a one-page front end for clinicians."""
