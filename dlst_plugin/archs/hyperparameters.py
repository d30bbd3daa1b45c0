"""Constructor arguments kept on the network as ``net.hyperparameters`` (spandrel's ``WithHyperparameters``
convention: a dict of every argument the constructor took, defaults filled in).

Programs that rebuild a network from its weights alone (spandrel, ComfyUI, chaiNNer, ``dlst-restore`` on a
file without ``meta``) can compare what they built with what was saved: two networks with equal
``hyperparameters`` compute the same function of the same weights. An arch may define
``normalise_hyperparameters(values) -> values`` to put equivalent spellings into one form (a default written
out, dict keys as ints), so the comparison does not depend on how an option file spelled them.
"""
import functools
import inspect


def store_hyperparameters(cls):
    """Class decorator: after ``cls.__init__`` runs, ``self.hyperparameters`` holds its bound arguments."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = {k: v for k, v in bound.arguments.items() if k != 'self'}
        init(self, *args, **kwargs)  # a decorated subclass's wrapper runs last, so its arguments win
        normalise = getattr(self, 'normalise_hyperparameters', None)
        self.hyperparameters = normalise(values) if normalise is not None else values

    cls.__init__ = __init__
    return cls
