from . import backbones, layers, necks  # noqa: F401  (registers the models)
