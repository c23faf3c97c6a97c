"""The anycast policy pack: rules in :mod:`policies.rules`, the pack object in ``policies/__main__.py``."""
