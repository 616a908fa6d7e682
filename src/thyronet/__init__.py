"""thyronet: computer-aided diagnosis of thyroid nodules on ultrasound.

An aid for physicians and researchers, not a diagnosis. Implements the ThyroNet-X4 Genesis
model (Wang, Niu et al., Sci. Rep. 2025) with honest, case-grouped evaluation.
"""

__version__ = "0.1.0"


def log_to_stderr() -> None:
    """thyronet's own messages to stderr, without the root logger's prefixes: for the command line,
    and for the Flower apps that Flower's own processes start."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("thyronet")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
