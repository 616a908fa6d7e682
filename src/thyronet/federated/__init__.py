"""Federated training on Flower: sites train a thyronet recipe on data that never leaves them, a
server aggregates their networks' weights, and each round's global model is a run folder."""
