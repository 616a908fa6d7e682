"""What a run is: its resolved config (YAML, checked) and the layout of its folder."""
